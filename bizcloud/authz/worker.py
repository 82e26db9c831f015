"""The authorization worker: a monitor subscriber that keeps every target converged to the planner's desire.

On each batch of instance events it plans again from the whole picture (the live instances, the
latest configs and inventory) and converges the targets whose desired grants changed, in parallel
(one lock per target, so two converges of one target never interleave). A target that fails
(database down, ZooKeeper away) does not hold up the batch or the other targets: its grants are
marked pending in the journal and it is retried on its own with capped exponential backoff until
it converges. Config changes (polled by revision) and a periodic resync converge every target, so
a worker killed half-way through a batch, or restarted after pods died, removes every orphan at
its next start: executors read the actual state back and apply only the difference.

Grants follow a pod's address, not its readiness: the monitor ``kick``s the worker when a pod gets
or loses an IP. After each converge the worker opens the ``bizcloud.io/authorized`` readiness gate
of every gated pod whose grants are all in place (``gate.py``), so it becomes Ready only then.

The worker shares the monitor's event loop with the catalog's feed (pod Ready -> routable at the
gateway), so kicks and batches do not each plan: they fold into one converge at a time, started at
most once per ``min_interval`` (20 ms: a fraction of the 200 ms grant goal), and the plan itself (a
pass over every addressed pod) runs on a worker thread. At 1,000 churning pods, planning on every
kick and every batch kept the loop busy back to back and delayed the catalog's commits behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter, Histogram

from bizcloud.authz.credentials import KubeCredentials
from bizcloud.authz.executor import Executor
from bizcloud.authz.gate import gate_condition, needs_by_pod
from bizcloud.authz.grants import Kind, TargetPlan
from bizcloud.authz.journal import AuthzStore
from bizcloud.authz.planner import Desired, Refusal, VersionedConfig, desired
from bizcloud.configcenter.schema import Inventory
from bizcloud.configcenter.store import ConfigStore, Snapshot
from bizcloud.errors import BizCloudError
from bizcloud.kube.conditions import PodCondition
from bizcloud.monitor.metrics import observe_since
from bizcloud.monitor.model import Instance, InstanceEvent, PodUid

log = logging.getLogger("bizcloud.authz")

CONVERGES = Counter("bizcloud_authz_converges_total", "Target converges", ["kind", "outcome"])
CHANGES = Counter("bizcloud_authz_changes_total", "Grants added or removed on targets", ["kind", "action"])
CONVERGE_SECONDS = Histogram("bizcloud_authz_converge_seconds", "Time to converge one target", ["kind"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5))
EVENT_TO_GRANT = Histogram("bizcloud_authz_event_seconds",
                           "From the monitor seeing a pod change to its targets converged",
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5))

GATES_OPENED = Counter("bizcloud_authz_gates_total", "Readiness gate conditions written", ["status"])

Key = tuple[Kind, str]
RECONCILE_BACKOFF_MAX_S = 30.0  # a database that stays away (or a schema from another version)
MIN_CONVERGE_INTERVAL_S = 0.02  # kicks and batches converge at most this often (see the docstring)
# A kick's converge trusts the config revision read this recently (a query per converge was two
# fifths of the worker's time at 1,000 churning pods); the reconcile loop polls it at 0.5 s and
# converges everything, from a fresh read, when it moves.
REVISION_TTL_S = 0.5
GateWriter = Callable[[Instance, PodCondition], Awaitable[object]]


def _describe(events: Sequence[InstanceEvent]) -> str:
    first = events[0]
    text = f"{first.type} {first.instance.namespace}/{first.instance.pod} ({first.uid})"
    return text if len(events) == 1 else f"{text} and {len(events) - 1} more"


class AuthzWorker:
    """Implements the monitor's ``BatchSubscriber``; ``reconcile_forever`` runs beside the monitor."""

    name = "authz"

    def __init__(self, *, configs: ConfigStore, store: AuthzStore, executors: Mapping[Kind, Executor],
                 live: Callable[[], Iterable[Instance]], credentials: KubeCredentials | None = None,
                 retry_max: float = 5.0, write_gate: GateWriter | None = None,
                 min_interval: float = MIN_CONVERGE_INTERVAL_S) -> None:
        self._configs = configs
        self._store = store
        self._executors = dict(executors)
        self._live = live
        self._credentials = credentials
        self._retry_max = retry_max
        self._snapshot: Snapshot | None = None
        self._owned: tuple[dict[str, frozenset[str]], frozenset[str]] | None = None
        self._done: dict[Key, TargetPlan] = {}          # the plan each target was last converged to
        self._failures: dict[Key, int] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._retrying: dict[Key, asyncio.Task[None]] = {}
        self._refused: set[Refusal] = set()
        self._last: Desired | None = None
        self._write_gate = write_gate
        self._written: dict[PodUid, PodCondition] = {}
        self._min_interval = min_interval
        self._wanted: str | None = None              # the trigger of the converge asked for next
        self._waiters: list[asyncio.Future[None]] = []  # batches waiting for that converge
        self._driver: asyncio.Task[None] | None = None
        self._started_at = -math.inf                 # loop time the last folded converge started
        self._revision_at = -math.inf                # monotonic time of the last revision read
        # The gated pods of the last live snapshot: the monitor hands out one immutable tuple until
        # its table changes, and a backlog converges every 20 ms against the same 10,000 pods.
        self._gated_of: tuple[tuple[Instance, ...], list[Instance]] = ((), [])

    # --- the subscriber ------------------------------------------------------------------------

    def kick(self, trigger: str) -> None:
        """Converge soon: a pod got or lost an address. Kicks that arrive before a converge starts
        fold into it, and those that arrive while one runs into one more after it, so a burst of
        new pods costs two plans, not one per pod."""
        self._want(trigger, wait=False)

    async def handle_batch(self, events: Sequence[InstanceEvent]) -> None:
        """Done once a converge that started after these events arrived has finished (its failure
        is this batch's: the dispatcher retries it)."""
        waiter = self._want(_describe(events), wait=True)
        assert waiter is not None
        await waiter
        observe_since(EVENT_TO_GRANT, time.time(), [e.observed_at for e in events if e.observed_at])

    def _want(self, trigger: str, *, wait: bool) -> asyncio.Future[None] | None:
        """Ask for a converge after this moment; with ``wait``, a future done when it is."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = loop.create_future() if wait else None
        self._wanted = trigger
        if waiter is not None:
            self._waiters.append(waiter)
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        return waiter

    async def _drive(self) -> None:
        """Run the converges asked for, one at a time, each start at least ``min_interval`` after
        the previous one's: what was asked for meanwhile folds into the next."""
        loop = asyncio.get_running_loop()
        while self._wanted is not None:
            pause = self._started_at + self._min_interval - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            trigger, waiters = self._wanted, self._waiters
            self._wanted, self._waiters = None, []
            self._started_at = loop.time()
            try:
                await self.converge(trigger=trigger)
            except asyncio.CancelledError:
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as e:  # the database may be away: the batches retry, the reconcile loop too
                if not waiters:  # kicks only: nobody else says it
                    log.exception("authz converge after a kick failed")
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(e)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # --- converging ----------------------------------------------------------------------------

    async def _plan(self, live: Iterable[Instance] | None = None, *, fresh: bool = False) -> Desired:
        now = time.monotonic()
        if fresh or self._snapshot is None or now - self._revision_at >= REVISION_TTL_S:
            revision = await asyncio.to_thread(self._configs.revision)
            self._revision_at = now
            if self._snapshot is None or self._snapshot.revision != revision:
                self._snapshot = await asyncio.to_thread(self._configs.latest)
        if self._owned is None:
            self._owned = await asyncio.to_thread(self._store.owned)
        snapshot, (users, interfaces) = self._snapshot, self._owned
        configs = {name: VersionedConfig(config, snapshot.versions.get(name, 0))
                   for name, config in snapshot.services.items()}
        # A pass over every addressed pod (13 ms per 1,000 pods with a MySQL grant each): on a thread, so the
        # loop keeps feeding the catalog meanwhile (it gets the GIL back every switch interval).
        pods = list(self._live() if live is None else live)
        return await asyncio.to_thread(desired, configs, snapshot.inventory, pods,
                                       owned_mysql_users=users, owned_interfaces=interfaces)

    async def converge(self, *, trigger: str, everything: bool = False) -> Desired:
        """Plan from the current picture and converge what changed (``everything``: every target)."""
        # The live pods once per converge (the plan and the gates): at 1,000 pods, building that
        # list twice per kick was a fifth of this worker's share of the monitor's event loop.
        snapshot = self._live()
        live = snapshot if isinstance(snapshot, tuple) else tuple(snapshot)
        plan = await self._plan(live, fresh=everything)
        self._last = plan
        new_refusals = [r for r in plan.refusals if r not in self._refused]
        if new_refusals:
            self._refused.update(new_refusals)
            await asyncio.to_thread(self._store.refused, new_refusals, trigger=trigger)
            for r in new_refusals:
                log.warning("grant refused service=%s env=%s pod=%s ip=%s dependency=%s reason=%s",
                            r.service, r.env, r.pod, r.ip, r.dependency, r.message)
        keys = [key for key, target in plan.plans.items()
                if everything or self._done.get(key) != target or key in self._failures]
        await asyncio.gather(*(self._converge_target(plan.plans[key], plan, trigger, everything=everything)
                               for key in keys))
        await self._open_gates(plan, live)
        return plan

    async def _open_gates(self, plan: Desired, live: Sequence[Instance] | None = None) -> None:
        """Write the gate condition of every gated pod whose state is decided and not yet written."""
        if self._write_gate is None:
            return
        gated = self._gated(tuple(self._live()) if live is None else live)
        self._written = {i.uid: c for i in gated if (c := self._written.get(i.uid)) is not None}
        if not gated:
            return
        needs = needs_by_pod(plan)
        kinds = set(self._executors)
        for instance in gated:
            condition = gate_condition(instance, plan, needs.get(instance.uid, {}), done=self._done,
                                       failing=self._failures, kinds=kinds)
            written = self._written.get(instance.uid)
            if condition is None or written == condition or (written is not None and written.status):
                continue  # undecided, already said, or opened (the pod may not show it yet): stays open
            try:
                await self._write_gate(instance, condition)
            except Exception as e:  # the API server may be away: the next converge writes it
                log.warning("gate write failed pod=%s/%s error=%r", instance.namespace, instance.pod, e)
                continue
            self._written[instance.uid] = condition
            GATES_OPENED.labels(str(condition.status).lower()).inc()
            log.info("gate %s pod=%s/%s reason=%s message=%r", "opened" if condition.status else "held",
                     instance.namespace, instance.pod, condition.reason, condition.message)

    def _gated(self, live: Sequence[Instance]) -> list[Instance]:
        """The pods still waiting for their gate (scanned once per snapshot: see ``_gated_of``)."""
        seen, gated = self._gated_of
        if live is not seen:
            gated = [i for i in live if i.authorized is False]
            if isinstance(live, tuple):
                self._gated_of = (live, gated)
        return gated

    async def _converge_target(self, target: TargetPlan, plan: Desired, trigger: str, *,
                               everything: bool = False) -> bool:
        key = (target.kind, target.target)
        executor = self._executors.get(target.kind)
        if executor is None:
            return True  # no executor for this kind here (no ZooKeeper configured): nothing to do
        async with self._locks.setdefault(key, asyncio.Lock()):
            attempts = self._failures.get(key, 0) + 1
            started = time.perf_counter()
            reasons = {g: plan.reasons.get(g, ()) for g in target.desired}
            try:
                result = await executor.converge(target, everything=everything)
            except Exception as e:  # any failure: pending, retried; never lost, never fatal
                message = e.one_line() if isinstance(e, BizCloudError) else f"{type(e).__name__}: {e}"
                self._failures[key] = attempts
                CONVERGES.labels(target.kind.value, "failed").inc()
                log.warning("converge failed kind=%s target=%s attempt=%d error=%s",
                            target.kind, target.target, attempts, message)
                await asyncio.to_thread(self._store.failed, target, message, reasons, trigger=trigger,
                                        attempts=attempts)
                self._schedule_retry(key, attempts)
                return False
            CONVERGE_SECONDS.labels(target.kind.value).observe(time.perf_counter() - started)
            CONVERGES.labels(target.kind.value, "ok").inc()
            self._failures.pop(key, None)
            self._done[key] = target
            if result.added or result.removed or attempts > 1:
                CHANGES.labels(target.kind.value, "grant").inc(len(result.added))
                CHANGES.labels(target.kind.value, "revoke").inc(len(result.removed))
                added, removed = len(result.added), len(result.removed)
                log.info("converged kind=%s target=%s added=%d removed=%d attempts=%d trigger=%r",
                         target.kind, target.target, added, removed, attempts, trigger)
                await asyncio.to_thread(self._store.converged, target, result, reasons, trigger=trigger,
                                        attempts=attempts)
                if result.added and self._owned is not None:
                    self._remember_owned(target)
            return True

    def _remember_owned(self, target: TargetPlan) -> None:
        """Grants just made are owned from now on (the journal says so too, for the next start)."""
        assert self._owned is not None
        users, interfaces = self._owned
        if target.kind is Kind.SOA:
            interfaces = interfaces | {target.target}
        elif target.kind is Kind.MYSQL:
            cluster = target.target.split("/", 1)[0]
            names = {g.detail.user for g in target.desired if hasattr(g.detail, "user")}
            users = {**users, cluster: users.get(cluster, frozenset()) | names}
        self._owned = (users, interfaces)

    def _schedule_retry(self, key: Key, attempts: int) -> None:
        if key in self._retrying and not self._retrying[key].done():
            return
        delay = min(self._retry_max, 0.2 * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
        task = asyncio.create_task(self._retry(key, delay))
        self._retrying[key] = task

    async def _retry(self, key: Key, delay: float) -> None:
        await asyncio.sleep(delay)
        self._retrying.pop(key, None)
        plan = await self._plan()
        target = plan.plans.get(key)
        if target is None:
            self._failures.pop(key, None)  # the target left the inventory: nothing to converge
            return
        failures = self._failures.get(key, 0)
        await self._converge_target(target, plan, trigger=f"retry after {failures} failures")
        await self._open_gates(plan)

    # --- beside the monitor --------------------------------------------------------------------

    async def ensure_secrets(self) -> None:
        """Every service with a MySQL dependency gets its password Secret in each of its environments
        (those in its config's resources and those it has pods in), so pods can start with it."""
        if self._credentials is None or self._snapshot is None:
            return
        services = {name: config for name, config in self._snapshot.services.items()
                    if config.dependencies.mysql}
        if not services:  # the usual case at a start: no pass over thousands of pods for nothing
            return
        envs_of: dict[str, set[str]] = {name: set() for name in services}
        for instance in self._live():
            if (envs := envs_of.get(instance.service)) is not None:
                envs.add(instance.env)
        for name, config in services.items():
            for env in sorted(set(config.resources) | envs_of[name]):
                for mysql in config.dependencies.mysql:
                    with contextlib.suppress(BizCloudError):  # no namespace yet: made with the first pod
                        await self._credentials.ensure(name, env, mysql.user)

    async def reconcile_forever(self, interval: float, stop: asyncio.Event, *, when: Callable[[], bool],
                                poll: float = 0.5) -> None:
        """Converge every target at start and every ``interval``; follow config changes within ``poll``."""
        last_full = 0.0
        seen_revision = -1
        failures, last_error = 0, ""
        while not stop.is_set():
            if when():
                try:
                    revision = await asyncio.to_thread(self._configs.revision)
                    full = time.monotonic() - last_full >= interval
                    if full or revision != seen_revision:
                        trigger = "resync" if full else f"config revision {revision}"
                        await self.converge(trigger=trigger, everything=True)
                        await self.ensure_secrets()
                        seen_revision, last_full = revision, time.monotonic() if full else last_full
                    failures, last_error = 0, ""
                except Exception as e:  # the database may be away; the next round tries again
                    failures += 1
                    error = f"{type(e).__name__}: {e}"
                    if error != last_error:  # the trace once per distinct error, then one line
                        log.exception("authz reconcile failed; retrying with backoff")
                    else:
                        log.warning("authz reconcile still failing attempts=%d error=%.300s", failures, error)
                    last_error = error
            pause = min(RECONCILE_BACKOFF_MAX_S, poll * 2 ** failures) if failures else poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)
        for task in list(self._retrying.values()):
            task.cancel()

    async def aclose(self) -> None:
        """Close what executors keep open (MySQL admin sessions) once nothing converges any more."""
        if self._driver is not None:
            self._driver.cancel()
        for task in list(self._retrying.values()):
            task.cancel()
        for executor in self._executors.values():
            close = getattr(executor, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    def last_plan(self) -> Desired | None:
        return self._last

    def inventory(self) -> Inventory:
        """The inventory of the latest snapshot (executors resolve targets through it)."""
        return self._snapshot.inventory if self._snapshot is not None else Inventory()
