"""The monitor: the informer's pods in, instance events out, and the catalog kept honest.

It is the informer's handler. It keeps the last state of every labelled pod, turns each change
into events (`instances.events_for`), and, while it leads, hands them to the dispatcher. A list
that arrives in chunks is taken chunk by chunk, as watch events would be (each pod's state in it
is current); its end only adds what a chunk cannot tell: which known pods it lacks. After
every relist and every ``resync`` seconds it reconciles the catalog with the live pods:

- a serving pod missing from the catalog (or different there) is sent UP again;
- a catalog row for a pod the monitor saw deleted (a tombstone) is sent DOWN at once;
- any other row with no live pod behind it is sent DOWN once it has stayed so for ``grace``
  seconds, so a row whose UP is still in flight, or a monitor that just restarted, never drops
  an instance that is alive. Nothing is reconciled before the first complete list, and the
  reconciliation after a list waits until its events are delivered.

A standby monitor keeps its table warm but dispatches nothing; when it takes the lease it
replays every serving instance (subscribers are idempotent) and reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bizcloud.monitor import metrics
from bizcloud.monitor.dispatcher import Dispatcher
from bizcloud.monitor.instances import (
    Skipped,
    address_moved,
    events_for,
    instance_from_pod,
    same_for_subscribers,
)
from bizcloud.monitor.model import EventType, Instance, InstanceEvent, PodUid
from bizcloud.monitor.protocols import CatalogView

log = logging.getLogger("bizcloud.monitor")

TOMBSTONE_TTL = 600.0
LIST_SETTLE_S = 5.0   # the longest the reconciliation after a list waits for the list's events


@dataclass(frozen=True)
class Repairs:
    added: int = 0
    removed: int = 0


@dataclass
class _Listing:
    """What the monitor took from a list arriving in chunks (``on_list_chunk``)."""

    instances: dict[PodUid, Instance] = field(default_factory=dict)
    count: int = 0                        # objects taken
    last: dict[str, Any] | None = None    # the last of them
    events: int = 0                       # events emitted for them

    def began(self, objects: list[dict[str, Any]]) -> bool:
        """Whether the complete list ``objects`` starts with the objects taken."""
        return 0 < self.count <= len(objects) and objects[self.count - 1] is self.last


class Monitor:
    """Implements the informer's handler protocol (`on_sync`, `on_event`)."""

    def __init__(self, dispatcher: Dispatcher, catalog: CatalogView | None, *, grace: float = 5.0,
                 clock: Callable[[], float] = time.time,
                 on_addresses: Callable[[str], None] | None = None) -> None:
        self._dispatcher = dispatcher
        self._on_addresses = on_addresses
        self._catalog = catalog
        self._grace = grace
        self._clock = clock
        self._table: dict[PodUid, Instance] = {}
        # live() and addressed(), kept until the table changes: the authorization worker asks for
        # the addressed pods on every converge, up to 50 times a second while a backlog of
        # thousands of pods is delivered, and the table rarely moves between two of them.
        self._live: tuple[Instance, ...] | None = None
        self._addressed: tuple[Instance, ...] | None = None
        self._tombstones: dict[PodUid, float] = {}
        self._dirty_since: dict[PodUid, float] = {}
        self._synced = False
        self._leading = False
        self._listing = _Listing()
        self._after_list: asyncio.Task[None] | None = None
        self._reconcile_lock = asyncio.Lock()

    # --- state ---------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def leading(self) -> bool:
        return self._leading

    def live(self) -> Iterable[Instance]:
        """Every serving pod (an immutable snapshot of the table: kept until the table changes)."""
        if self._live is None:
            self._live = tuple([i for i in self._table.values() if i.serving])
        return self._live

    def addressed(self) -> Iterable[Instance]:
        """Every pod that holds an address (Ready or not): what authorization grants to."""
        if self._addressed is None:
            self._addressed = tuple([i for i in self._table.values() if i.addressed])
        return self._addressed

    def _table_changed(self) -> None:
        self._live = self._addressed = None

    def _instance(self, pod: dict[str, Any]) -> Instance | None:
        result = instance_from_pod(pod)
        if isinstance(result, Skipped):
            metrics.SKIPPED.labels(result.reason.value).inc()
            return None
        return result

    def _addresses_changed(self, trigger: str) -> None:
        """Tell authorization (while leading) that a pod got or lost an address, or its gate moved:
        those are not serving events, and a gated pod only becomes Ready after its grants."""
        if self._leading and self._on_addresses is not None:
            self._on_addresses(trigger)

    def _emit(self, events: Iterable[InstanceEvent]) -> None:
        if not self._leading:
            return
        self._dispatcher.submit_many(list(events))

    # --- the informer's handler ----------------------------------------------------------------

    async def on_list_chunk(self, objects: list[dict[str, Any]], offset: int) -> None:
        """Part of a list still arriving: each pod in it is in this state now, so its events go
        out at once, as a watch event's would; only the pods the list lacks wait for ``on_sync``."""
        listing = self._listing
        if offset != listing.count:   # a new list; or a chunk of one whose start we never saw,
            self._listing = listing = _Listing()     # which on_sync will then diff whole
            if offset:
                return
        now = self._clock()
        events: list[InstanceEvent] = []
        moved = changed = 0
        for pod in objects:
            new = self._instance(pod)
            if new is None:
                continue
            old = self._table.get(new.uid)
            listing.instances[new.uid] = self._table[new.uid] = new   # the same object: on_sync skips it
            if old != new:
                version = pod.get("metadata", {}).get("resourceVersion", "")
                events += events_for(old, new, resource_version=version, observed_at=now)
                moved += address_moved(old, new)
                changed += 1
        listing.count += len(objects)
        listing.last = objects[-1] if objects else listing.last
        listing.events += len(events)
        if changed:
            self._table_changed()
        self._emit(events)
        if moved:
            self._addresses_changed(f"list: {moved} pods got or lost an address")

    async def on_sync(self, objects: list[dict[str, Any]], resource_version: str) -> None:
        """A complete list: diff it against what we knew (missed DELETEs become DOWN here)."""
        metrics.RELISTS.inc()
        now = self._clock()
        listing = self._listing if self._listing.began(objects) else _Listing()
        self._listing = _Listing()
        fresh = listing.instances
        for pod in objects[listing.count:]:
            instance = self._instance(pod)
            if instance is not None:
                fresh[instance.uid] = instance
        events: list[InstanceEvent] = []
        moved = 0
        for uid in self._table.keys() | fresh.keys():
            old, new = self._table.get(uid), fresh.get(uid)
            if old is new:         # applied from a chunk
                continue
            events += events_for(old, new, resource_version=resource_version, observed_at=now)
            moved += address_moved(old, new)
            if uid not in fresh:
                self._tombstones[uid] = now
        self._table = fresh
        self._table_changed()
        self._synced = True
        log.info("relisted pods=%d instances=%d events=%d rv=%s", len(objects), len(fresh),
                 listing.events + len(events), resource_version)
        self._emit(events)
        if moved:
            self._addresses_changed(f"relist: {moved} pods got or lost an address")
        if self._after_list is not None:
            self._after_list.cancel()
        self._after_list = asyncio.create_task(self._reconcile_after_list(), name="reconcile after list")

    async def _reconcile_after_list(self) -> None:
        """Reconcile once the dispatcher has delivered what the list brought (or after
        ``LIST_SETTLE_S``), not while it does: a 10,000-pod list's events are still being
        committed when it ends, the catalog read (0.1 s) would only slow those commits down,
        and it would have to pass over every pod still in flight."""
        with contextlib.suppress(TimeoutError):
            await self._dispatcher.drain(timeout=LIST_SETTLE_S)
        try:
            await self.reconcile()
        except Exception as e:  # the catalog may be down: the periodic resync tries again
            log.warning("reconcile after the list failed error=%r", e)

    async def settled(self) -> None:
        """Return once the reconciliation after the latest list has run (tests, benchmarks)."""
        if self._after_list is not None:
            await asyncio.wait({self._after_list})

    async def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        now = self._clock()
        meta = obj.get("metadata", {})
        uid = PodUid(meta.get("uid", ""))
        new = None if kind == "DELETED" else self._instance(obj)
        old = self._table.get(uid)
        if new is None or new != old:
            self._table_changed()
        if new is None:
            self._table.pop(uid, None)
            if kind == "DELETED":
                self._tombstones[uid] = now
        else:
            self._table[uid] = new
        self._emit(events_for(old, new, resource_version=meta.get("resourceVersion", ""), observed_at=now))
        if address_moved(old, new):
            self._addresses_changed(f"{kind} {meta.get('namespace')}/{meta.get('name')} ({uid})")

    # --- reconciliation ------------------------------------------------------------------------

    async def reconcile(self) -> Repairs:
        """Repair the catalog both ways (see the module docstring). Returns what was repaired."""
        if not (self._synced and self._leading and self._catalog is not None):
            return Repairs()
        async with self._reconcile_lock:
            read_at = time.monotonic()
            catalog = await self._catalog.instances()
            now = self._clock()
            live = {i.uid: i for i in self.live()}
            added = removed = 0

            def settling(uid: PodUid) -> bool:
                """In flight, or delivered after the catalog was read: the read is stale for it."""
                return self._dispatcher.busy(uid) or self._dispatcher.finished_at(uid) >= read_at

            for uid, instance in live.items():
                row = catalog.get(uid)
                if settling(uid) or (row is not None and same_for_subscribers(row, instance)):
                    continue
                self._dispatcher.submit(InstanceEvent(type=EventType.UP, instance=instance, observed_at=now))
                added += 1
            for uid, row in catalog.items():
                if uid in live or settling(uid):
                    continue
                dead = uid in self._tombstones
                first = self._dirty_since.setdefault(uid, now)
                if dead or now - first >= self._grace:
                    down = InstanceEvent(type=EventType.DOWN, instance=row, observed_at=now)
                    self._dispatcher.submit(down)
                    self._dirty_since.pop(uid, None)
                    removed += 1
            self._dirty_since = {u: t for u, t in self._dirty_since.items() if u in catalog and u not in live}
            self._tombstones = {u: t for u, t in self._tombstones.items() if now - t < TOMBSTONE_TTL}
        if added or removed:
            metrics.REPAIRS.labels("added").inc(added)
            metrics.REPAIRS.labels("removed").inc(removed)
            log.info("reconciled added=%d removed=%d", added, removed)
        return Repairs(added=added, removed=removed)

    async def resync_forever(self, interval: float, stop: asyncio.Event) -> None:
        """Reconcile every ``interval`` seconds until ``stop``; errors are logged and retried."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                await self.reconcile()
            except Exception as e:  # the catalog may be down: try again next round
                log.warning("reconcile failed error=%r", e)

    # --- leadership ----------------------------------------------------------------------------

    async def start_leading(self) -> None:
        """Take over dispatching: replay every serving instance, then reconcile."""
        self._leading = True
        metrics.LEADER.set(1)
        log.info("leading instances=%d synced=%s", len(self._table), self._synced)
        now = self._clock()
        self._emit(InstanceEvent(type=EventType.UP, instance=i, observed_at=now) for i in self.live())
        self._addresses_changed("leading")
        await self.reconcile()

    async def stop_leading(self) -> None:
        self._leading = False
        if self._after_list is not None:
            self._after_list.cancel()
        metrics.LEADER.set(0)
        await self._dispatcher.stop()
        log.info("stopped leading")
