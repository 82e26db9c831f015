"""The catalog as the monitor sees it: a subscriber, the reconciler's view, and the journal.

The monitor's dispatcher calls ``handle`` for every instance event (in order per pod, at least
once); the reconciler compares the cluster with ``instances()``; the dispatcher records outcomes
with ``record``. All three run the synchronous store in a worker thread so the monitor's event
loop keeps watching while SQL commits. ``handle`` returns as soon as the change is committed, so
the monitor's pod-transition -> catalog-committed latency (from ``event.observed_at``) is the
store's commit time plus one thread hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import Instance, InstanceEvent, PodUid

CHANGES = Counter("bizcloud_catalog_changes_total", "Instance events that changed the catalog", ["type"])
NOOPS = Counter("bizcloud_catalog_noop_events_total", "Instance events the catalog already agreed with")
COMMIT_SECONDS = Histogram("bizcloud_catalog_apply_seconds", "Time to apply one instance event",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


class CatalogSubscriber:
    """Implements the monitor's ``Subscriber``, ``CatalogView`` and ``Journal`` on one store."""

    name = "catalog"

    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self.last_revision: int | None = None        # the newest revision this subscriber committed
        self.last_committed_at: float | None = None  # time.time() right after that commit

    async def handle(self, event: InstanceEvent) -> None:
        """Apply the event; raises (a retry for the dispatcher) when the database is unavailable."""
        started = time.perf_counter()
        revision = await asyncio.to_thread(self._store.apply_event, event=event)
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        if revision is None:
            NOOPS.inc()
            return
        CHANGES.labels(type=event.type.value).inc()
        self.last_revision = revision
        self.last_committed_at = time.time()

    async def handle_batch(self, events: Sequence[InstanceEvent]) -> None:
        """Apply many events in one transaction (the dispatcher's batch lane uses this)."""
        started = time.perf_counter()
        revisions = await asyncio.to_thread(self._store.apply_events, events=list(events))
        COMMIT_SECONDS.observe(time.perf_counter() - started)
        for event, revision in zip(events, revisions, strict=True):
            if revision is None:
                NOOPS.inc()
            else:
                CHANGES.labels(type=event.type.value).inc()
                self.last_revision = revision
        if any(r is not None for r in revisions):
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
