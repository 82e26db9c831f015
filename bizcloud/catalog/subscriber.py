"""The catalog as the monitor sees it: a subscriber, the reconciler's view, and the journal.

The monitor's dispatcher calls ``handle`` for every instance event (in order per pod, at least
once); the reconciler compares the cluster with ``instances()``; the dispatcher records outcomes
with ``record``. All three run the synchronous store in a worker thread so the monitor's event
loop keeps watching while SQL commits — except a small batch that finds the write lock free,
which the loop commits itself (``handle_batch`` says why). ``handle`` returns as soon as the
change is committed, so the monitor's pod-transition -> catalog-committed latency (from
``event.observed_at``) is the store's commit time plus at most one thread hop. Who must hear of
a commit at once (the API servers' wake-ups, the gateways' pushes) is told by the store itself,
on the committing thread (``CatalogStore(on_commit=...)``), before this coroutine even resumes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Histogram

from bizcloud.catalog.errors import WriteBusy
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.metrics import observe_many, observe_since
from bizcloud.monitor.model import Instance, InstanceEvent, PodUid

log = logging.getLogger(__name__)

CHANGES = Counter("bizcloud_catalog_changes_total", "Instance events that changed the catalog", ["type"])
NOOPS = Counter("bizcloud_catalog_noop_events_total", "Instance events the catalog already agreed with")
COMMIT_SECONDS = Histogram("bizcloud_catalog_apply_seconds", "Time to apply one instance event",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
# Where an event's time goes between the monitor seeing it and its commit, per event: the batch
# lane's queue (``queued``: seen -> its batch handed to us), the thread pool (``thread_wait``),
# the store's transaction (``apply``) and the event loop taking the result back (``resume``). The
# latency benchmark reads them to find which stage makes the Ready -> committed p99.
STAGE_SECONDS = Histogram("bizcloud_catalog_stage_seconds", "Seen -> committed, per stage, per event",
                          ["stage"], buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                                              0.2, 0.3, 0.5, 1, 2.5))
INLINE_MAX = 64   # events in a batch the loop commits itself (see ``handle_batch``)
_STAGES = {stage: STAGE_SECONDS.labels(stage) for stage in ("queued", "thread_wait", "apply", "resume")}


class CatalogSubscriber:
    """Implements the monitor's ``Subscriber``, ``CatalogView`` and ``Journal`` on one store."""

    name = "catalog"

    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self.last_revision: int | None = None        # the newest revision this subscriber committed
        self.last_committed_at: float | None = None  # time.time() right after that commit
        # Commits run on a thread of their own, not the loop's shared pool: there they queued
        # behind journal writes, grants and reads (thread_wait p99 75 ms at 1,000 churning pods).
        # One thread is enough: the dispatcher's batch lane sends one batch at a time.
        self._commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-commit")

    async def handle(self, event: InstanceEvent) -> None:
        """Apply the event; raises (a retry for the dispatcher) when the database is unavailable."""
        started = time.perf_counter()
        revision = await asyncio.get_running_loop().run_in_executor(
            self._commits, functools.partial(self._store.apply_event, event=event))
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        if revision is None:
            NOOPS.inc()
            return
        CHANGES.labels(type=event.type.value).inc()
        self.last_revision = revision
        self.last_committed_at = time.time()

    async def handle_batch(self, events: Sequence[InstanceEvent]) -> None:
        """Apply many events in one transaction (the dispatcher's batch lane uses this).

        A small batch on a local database commits right here, on the event loop, when the write
        lock is free: its transaction is ~3 ms of CPU, but on the commit thread each of its few
        dozen SQLite calls gives the GIL away and waits to get it back from a loop busy with watch
        events, a thread wake-up each on a loaded machine (apply p50 6 / p99 69 ms for 2.6 / 5.7 ms
        of CPU, at 1,000 churning pods). Here it runs through. A big batch (a relist's backlog) or
        a taken write lock goes to the thread as before, so the loop never waits on SQLite.
        """
        started, handed = time.perf_counter(), time.time()
        ran: list[float] = []

        def apply(*, wait: bool = True) -> list[int | None]:
            ran[:] = [time.time()]
            try:
                return self._store.apply_events(events=list(events), wait=wait)
            finally:
                ran.append(time.time())

        revisions: list[int | None] | None = None
        if len(events) <= INLINE_MAX and self._store.local:
            with contextlib.suppress(WriteBusy):
                revisions = apply(wait=False)
        if revisions is None:
            revisions = await asyncio.get_running_loop().run_in_executor(self._commits, apply)
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        _observe_stages(events, handed, ran[0], ran[1], time.time())
        changed = collections.Counter(e.type.value for e, revision in zip(events, revisions, strict=True)
                                      if revision is not None)
        for kind, count in changed.items():
            CHANGES.labels(type=kind).inc(count)
        NOOPS.inc(len(events) - changed.total())
        if changed:
            self.last_revision = max(r for r in revisions if r is not None)
            self.last_committed_at = time.time()

    async def record_batch(self, *, events: Sequence[InstanceEvent], subscriber: str, outcome: str,
                           attempts: int, error: str | None = None) -> None:
        await asyncio.to_thread(self._store.record_journal_many, events=list(events), subscriber=subscriber,
                                outcome=outcome, attempts=attempts, error=error)

    async def instances(self) -> dict[PodUid, Instance]:
        return await asyncio.to_thread(self._store.all_instances)

    async def record(self, *, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                     error: str | None = None) -> None:
        await asyncio.to_thread(self._store.record_journal, event=event, subscriber=subscriber,
                                outcome=outcome, attempts=attempts, error=error)


def _observe_stages(events: Sequence[InstanceEvent], handed: float, started: float, applied: float,
                    resumed: float) -> None:
    """Each event's share of the batch's stages (see ``STAGE_SECONDS``): one observation per event."""
    observe_since(_STAGES["queued"], handed, [e.observed_at for e in events if e.observed_at])
    for stage, seconds in (("thread_wait", started - handed), ("apply", applied - started),
                           ("resume", resumed - applied)):
        observe_many(_STAGES[stage], max(0.0, seconds), len(events))
