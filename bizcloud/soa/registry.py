"""The registry writer: a monitor subscriber that keeps Dubbo's provider nodes true to the cluster.

Where it sits: k8s-monitor -> dispatcher -> **SoaRegistry** -> ZooKeeper -> consumers' watches.

- ``handle`` (UP / CHANGED / DOWN, in order per pod, retried with backoff by the dispatcher and
  journaled there) writes or deletes that pod's nodes. The nodes are persistent: they belong to
  the registry, not to a pod's session, so a ``kill -9`` cannot strand one and a dead consumer
  connection cannot remove a live one.
- ``reconcile`` compares the interfaces the registry owns (every interface it ever wrote,
  recorded under ``/bizcloud/soa/interfaces``) with the monitor's live instances and repairs
  both ways: a zombie node (written by hand, or left while the monitor was down) is purged, a
  missing one (ZooKeeper restarted on empty data) is written. It runs every
  ``monitor_resync_s`` and as soon as a lost ZooKeeper session comes back.
- Reconcile and event handling take one lock, and reconcile reads the live instances inside it:
  the monitor updates its table before it queues an event, so whatever the reconcile sees is
  either already written or will be written again by the queued (idempotent) event.

Bad input never reaches ZooKeeper: a pod whose annotation is missing or malformed is refused,
logged with the reason and counted (``bizcloud_soa_refused_total{reason}``). ZooKeeper being
unreachable raises ``RegistryUnavailableError``, which the dispatcher retries with backoff and journals
(outcome ``retry``), so nothing is lost: each pending event is applied when it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from prometheus_client import Counter, Gauge

from bizcloud.errors import BizCloudError
from bizcloud.monitor.model import EventType, Instance, InstanceEvent
from bizcloud.soa.plan import SOA_PORT, Actions, desired, nodes_of_pod, plan, providers_of
from bizcloud.soa.urls import InvalidInterfaceError, parse_interfaces, providers_path
from bizcloud.soa.watching import forget_zxid_when_suspended

log = logging.getLogger("bizcloud.soa.registry")

OWNED_ROOT = "/bizcloud/soa/interfaces"

WRITES = Counter("bizcloud_soa_registry_writes_total", "Provider nodes written or deleted", ["op"])
REFUSED = Counter("bizcloud_soa_refused_total", "Instances refused by the SOA registry", ["reason"])
REPAIRS = Counter("bizcloud_soa_reconcile_repairs_total", "Provider nodes repaired by reconcile", ["kind"])
CONNECTED = Gauge("bizcloud_soa_zookeeper_connected", "1 while the registry's ZooKeeper session is up")


class RegistryUnavailableError(BizCloudError):
    """ZooKeeper did not take a write; the dispatcher retries the event."""


class SoaRegistry:
    """Implements the monitor's ``Subscriber`` on one kazoo client."""

    name = "soa"

    def __init__(self, client: KazooClient, *, live: Callable[[], Iterable[Instance]],
                 timeout: float = 5.0) -> None:
        self._client = client
        self._timeout = timeout
        self._live = live
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resync = asyncio.Event()
        self._lost = False
        client.add_listener(self._on_state)

    @classmethod
    def connect(cls, hosts: str, *, live: Callable[[], Iterable[Instance]]) -> SoaRegistry:
        """A registry on its own client, connecting in the background and reconnecting forever:
        the monitor starts whether or not ZooKeeper is up, and writes wait in the dispatcher."""
        client = KazooClient(hosts=hosts, timeout=10.0,
                             connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 5.0})
        forget_zxid_when_suspended(client)
        registry = cls(client, live=live)
        client.start_async()
        log.info("soa registry hosts=%s", hosts)
        return registry

    @property
    def client(self) -> KazooClient:
        """The registry's ZooKeeper session, shared with the whitelist executor (one session per process)."""
        return self._client

    def close(self) -> None:
        self._client.stop()
        self._client.close()

    # --- session --------------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        """kazoo's thread: remember a lost session, ask for a reconcile once connected again."""
        CONNECTED.set(1 if state == KazooState.CONNECTED else 0)
        if state == KazooState.LOST:
            self._lost = True
        elif state == KazooState.CONNECTED and self._loop is not None:
            log.info("zookeeper connected lost_session=%s", self._lost)
            self._loop.call_soon_threadsafe(self._resync.set)

    def _zk(self, what: str, call: Callable[[], Any]) -> Any:
        """Run one kazoo ``*_async`` call and wait at most ``timeout``.

        kazoo's synchronous calls wait forever for a connection (a request queued while the
        server is away stays queued), which would stall the dispatcher's retries and hide the
        outage from the journal; a bounded wait turns it into a retry.
        """
        try:
            return call().get(timeout=self._timeout)
        except (KazooException, self._client.handler.timeout_exception) as e:
            raise RegistryUnavailableError(f"ZooKeeper refused {what}: {e!r}",
                                      hint="check that ZooKeeper runs (bizcloud status)") from e

    # --- events ---------------------------------------------------------------------------

    async def handle(self, event: InstanceEvent) -> None:
        self._loop = asyncio.get_running_loop()
        if SOA_PORT not in event.instance.ports and event.type is not EventType.CHANGED:
            return  # an HTTP-only pod never had provider nodes (a CHANGED may have dropped its port)
        async with self._lock:
            if event.type is EventType.DOWN:
                await asyncio.to_thread(self._withdraw, event.instance, keep=set())
                return
            try:
                providers = providers_of(event.instance)
            except InvalidInterfaceError as e:
                self._refuse(event.instance, e.reason, str(e))
                providers = []
            nodes = {p.interface: p.node for p in providers}
            await asyncio.to_thread(self._publish, event.instance, nodes, event.type is EventType.CHANGED)

    def _refuse(self, instance: Instance, reason: str, message: str) -> None:
        REFUSED.labels(reason).inc()
        log.warning("refused pod=%s/%s service=%s reason=%s error=%s hint=%s", instance.namespace,
                    instance.pod, instance.service, reason, message,
                    "set the pod annotation bizcloud.io/soa-interfaces to Java interface names separated "
                    "by commas, e.g. com.example.DemoApi")

    def _publish(self, instance: Instance, nodes: dict[str, str], changed: bool) -> None:
        """Write this pod's nodes; on a change, drop the ones it wrote before and no longer has."""
        for interface, node in nodes.items():
            self._own(interface)
            self._create(interface, node)
        if changed:
            self._withdraw(instance, keep=set(nodes.values()), everywhere=True)

    def _withdraw(self, instance: Instance, *, keep: set[str], everywhere: bool = False) -> None:
        """Delete the nodes this pod's uid wrote (except ``keep``).

        Looks in the interfaces of the pod's annotation, or in every owned interface when the
        annotation is unreadable or may have changed (``everywhere``).
        """
        try:
            interfaces = set(parse_interfaces(instance.soa_interfaces))
        except InvalidInterfaceError:
            everywhere = True
            interfaces = set()
        if everywhere:
            interfaces |= set(self._owned())
        for interface in interfaces:
            for node in nodes_of_pod(self._children(interface), instance.uid):
                if node not in keep:
                    self._delete(interface, node)

    # --- ZooKeeper primitives -------------------------------------------------------------

    def _list(self, path: str) -> list[str]:
        try:
            return list(self._zk(f"listing {path}", lambda: self._client.get_children_async(path)))
        except RegistryUnavailableError as e:
            if isinstance(e.__cause__, NoNodeError):
                return []
            raise

    def _owned(self) -> list[str]:
        return self._list(OWNED_ROOT)

    def _own(self, interface: str) -> None:
        path = f"{OWNED_ROOT}/{interface}"
        self._zk("recording an interface", lambda: self._client.ensure_path_async(path))

    def _children(self, interface: str) -> list[str]:
        return self._list(providers_path(interface))

    def _create(self, interface: str, node: str) -> None:
        path = f"{providers_path(interface)}/{node}"
        try:
            self._zk("a provider write", lambda: self._client.create_async(path, b"", makepath=True))
        except RegistryUnavailableError as e:
            if isinstance(e.__cause__, NodeExistsError):
                return
            raise
        WRITES.labels("create").inc()

    def _delete(self, interface: str, node: str) -> None:
        path = f"{providers_path(interface)}/{node}"
        try:
            self._zk("a provider delete", lambda: self._client.delete_async(path))
        except RegistryUnavailableError as e:
            if isinstance(e.__cause__, NoNodeError):
                return
            raise
        WRITES.labels("delete").inc()

    # --- reconciliation -------------------------------------------------------------------

    async def reconcile(self) -> Actions:
        """Make the owned interfaces hold exactly the live instances' providers; returns the repairs."""
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            actions = await asyncio.to_thread(self._reconcile)
        if actions:
            REPAIRS.labels("added").inc(len(actions.create))
            REPAIRS.labels("removed").inc(len(actions.delete))
            log.info("reconciled added=%d removed=%d", len(actions.create), len(actions.delete))
        return actions

    def _reconcile(self) -> Actions:
        wanted = desired(list(self._live()))
        for interface in wanted.nodes:
            self._own(interface)
        actual = {interface: set(self._children(interface)) for interface in self._owned()}
        actions = plan(actual, wanted.nodes)
        for interface, node in actions.create:
            self._create(interface, node)
        for interface, node in actions.delete:
            self._delete(interface, node)
        self._lost = False
        return actions

    async def reconcile_forever(self, interval: float, stop: asyncio.Event, *,
                                when: Callable[[], bool] = lambda: True) -> None:
        """Reconcile every ``interval`` seconds (and after a reconnect) while ``when()``; until ``stop``."""
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._resync.wait())]
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            self._resync.clear()
            if stop.is_set():
                return
            if not when():
                continue
            try:
                await self.reconcile()
            except BizCloudError as e:  # ZooKeeper away: next round, or at once when it is back
                log.warning("reconcile failed error=%s", e.one_line())

