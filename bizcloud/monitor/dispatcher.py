"""Delivers instance events to subscribers: in order per pod, in parallel across pods.

Two kinds of lanes, one per subscriber, so a slow or failing subscriber only delays itself:

- a plain `Subscriber` gets one queue and one worker per pod uid, as kopf does per object: a
  pod's events arrive in the order they happened, different pods proceed in parallel;
- a `BatchSubscriber` (the catalog) gets one FIFO and one worker that hands it everything
  queued at once (up to ``max_batch``), in arrival order — which keeps each pod's order — so a
  database writes thousands of events in one transaction instead of one each.

Delivery is at-least-once: a failed event (or batch) is retried with capped exponential backoff
until it succeeds (subscribers are idempotent), and each attempt's outcome is journaled — by one
journal writer off the delivery path, which writes everything recorded since its last write in a
few transactions (one per subscriber and outcome). Journaling inline cost every catalog batch a
second write transaction before the next batch could start, and every plain-lane event one of
its own, all queued on the catalog database's single writer: Ready -> committed waited for them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bizcloud.monitor import metrics
from bizcloud.monitor.model import EventType, InstanceEvent, PodUid
from bizcloud.monitor.protocols import BatchJournal, BatchSubscriber, Journal, Subscriber

log = logging.getLogger("bizcloud.monitor.dispatcher")

MAX_BATCH = 2000
JOURNAL_FLUSH_TIMEOUT_S = 5.0
JOURNAL_YIELD_S = 1.0     # the longest the journal waits for busy batch lanes (``_while_batches_deliver``)
JOURNAL_POLL_S = 0.005

# The events counter's child per type, resolved once (see ``_Lane.__post_init__``).
_EVENTS = {kind: metrics.EVENTS.labels(kind.value) for kind in EventType}

# events, subscriber, outcome, attempts, error: one outcome to journal
_Entry = tuple[list[InstanceEvent], str, str, int, str | None]


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``base`` doubling up to ``cap``, with ±20 % jitter."""

    base: float = 0.2
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        raw: float = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return raw * random.uniform(0.8, 1.2)


@dataclass
class _Lane:
    """One subscriber's pending events and workers."""

    subscriber: Subscriber | BatchSubscriber
    batched: bool
    queues: dict[PodUid, collections.deque[InstanceEvent]] = field(default_factory=dict)
    fifo: collections.deque[InstanceEvent] = field(default_factory=collections.deque)
    # events queued or in delivery per pod (absent: none). A plain dict: Counter's ``__del__`` and
    # ``__missing__`` are Python code, a tenth of the backlog's event-loop time at 10,000 pods.
    pending: dict[PodUid, int] = field(default_factory=dict)
    workers: dict[PodUid | None, asyncio.Task[None]] = field(default_factory=dict)
    queued: int = 0  # the sum of ``pending``, kept as it changes: summing per event is quadratic

    def __post_init__(self) -> None:
        # Metric children resolved once: ``labels()`` per event cost more than the event's bookkeeping.
        name = self.subscriber.name
        self.depth_gauge = metrics.QUEUE_DEPTH.labels(name)
        self.latency = metrics.LATENCY.labels(name)

    def depth(self) -> int:
        return self.queued


class Dispatcher:
    """Fan events out to subscribers registered by name."""

    def __init__(self, subscribers: Sequence[Subscriber | BatchSubscriber], *,
                 journal: Journal | None = None, backoff: Backoff | None = None,
                 max_batch: int = MAX_BATCH) -> None:
        names = [s.name for s in subscribers]
        if len(set(names)) != len(names):
            raise ValueError(f"subscriber names must be unique: {names}")
        self._lanes = {s.name: _Lane(s, batched=hasattr(s, "handle_batch")) for s in subscribers}
        self._journal = journal
        self._backoff = backoff or Backoff()
        self._max_batch = max_batch
        self._idle = asyncio.Event()
        self._idle.set()
        self._finished: dict[PodUid, float] = {}
        self._journal_log: collections.deque[_Entry] = collections.deque()
        self._journal_writer: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> list[str]:
        return list(self._lanes)

    def depth(self, subscriber: str) -> int:
        return self._lanes[subscriber].depth()

    def busy(self, uid: PodUid) -> bool:
        """Whether an event of this pod is still queued or being delivered to some subscriber."""
        return any(uid in lane.pending for lane in self._lanes.values())

    def finished_at(self, uid: PodUid) -> float:
        """When (time.monotonic) the last delivery of this pod's events completed; 0 if never."""
        return self._finished.get(uid, 0.0)

    def submit(self, event: InstanceEvent) -> None:
        """Queue ``event`` for every subscriber; never blocks."""
        self.submit_many([event])

    def submit_many(self, events: Sequence[InstanceEvent]) -> None:
        """Queue ``events``, in order, for every subscriber; never blocks. A relist hands over
        thousands at once: the metrics move once per call, not once per event."""
        if not events:
            return
        for kind, count in collections.Counter(e.type for e in events).items():
            _EVENTS[kind].inc(count)
        for lane in self._lanes.values():
            pending = lane.pending
            for event in events:
                uid = event.uid
                pending[uid] = pending.get(uid, 0) + 1
                if lane.batched:
                    lane.fifo.append(event)
                    key: PodUid | None = None
                else:
                    lane.queues.setdefault(uid, collections.deque()).append(event)
                    key = uid
                if key not in lane.workers:
                    work = self._work_batches(lane) if lane.batched else self._work_pod(lane, uid)
                    name = f"{lane.subscriber.name}:{key or 'batch'}"
                    lane.workers[key] = asyncio.create_task(work, name=name)
            lane.queued += len(events)
            lane.depth_gauge.set(lane.queued)
        self._idle.clear()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued event has been delivered and journaled (tests, clean shutdown)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self) -> None:
        """Cancel every worker; undelivered events are dropped (the next leader reconciles)."""
        tasks = [t for lane in self._lanes.values() for t in lane.workers.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer = self._journal_writer
        if writer is not None:   # what was delivered is journaled before we go
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer, JOURNAL_FLUSH_TIMEOUT_S)
        for lane in self._lanes.values():
            lane.queues.clear()
            lane.fifo.clear()
            lane.pending.clear()
            lane.queued = 0
            lane.workers.clear()
            lane.depth_gauge.set(0)
        self._idle.set()

    # --- workers -------------------------------------------------------------------------------

    async def _work_pod(self, lane: _Lane, uid: PodUid) -> None:
        queue = lane.queues[uid]
        subscriber = lane.subscriber
        assert not lane.batched and hasattr(subscriber, "handle")
        try:
            while queue:
                event = queue[0]
                await self._deliver(lane, [event], lambda e=event: subscriber.handle(e))  # type: ignore[misc]
                queue.popleft()
                self._delivered(lane, [event])
        finally:
            if lane.queues.get(uid) is queue and not queue:
                del lane.queues[uid]
            self._retire(lane, uid)

    async def _work_batches(self, lane: _Lane) -> None:
        subscriber = lane.subscriber
        assert lane.batched and hasattr(subscriber, "handle_batch")
        try:
            while lane.fifo:
                batch = [lane.fifo.popleft() for _ in range(min(self._max_batch, len(lane.fifo)))]
                await self._deliver(lane, batch, lambda b=batch: subscriber.handle_batch(b))  # type: ignore[misc]
                self._delivered(lane, batch)
        finally:
            self._retire(lane, None)

    def _delivered(self, lane: _Lane, events: list[InstanceEvent]) -> None:
        now, wall = time.monotonic(), time.time()
        pending, finished = lane.pending, self._finished
        for event in events:
            uid = event.uid
            left = pending.get(uid, 0) - 1
            if left > 0:
                pending[uid] = left
            else:
                pending.pop(uid, None)
            finished[uid] = now
        metrics.observe_since(lane.latency, wall, [e.observed_at for e in events if e.observed_at])
        lane.queued -= len(events)
        lane.depth_gauge.set(lane.queued)

    def _retire(self, lane: _Lane, key: PodUid | None) -> None:
        lane.workers.pop(key, None)
        lane.depth_gauge.set(lane.queued)
        if not any(lane.workers for lane in self._lanes.values()):
            if self._journal_writer is None:
                self._idle.set()
            # Forget completion times of pods with nothing pending, but keep recent ones for
            # the reconciler (it compares them with when it read the catalog).
            horizon = time.monotonic() - 600
            self._finished = {u: t for u, t in self._finished.items() if t > horizon}

    async def _deliver(self, lane: _Lane, events: list[InstanceEvent],
                       call: Callable[[], Awaitable[None]]) -> None:
        name = lane.subscriber.name
        attempt = 0
        while True:
            attempt += 1
            try:
                await call()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a subscriber's failure is retried, never propagated
                metrics.DELIVERIES.labels(name, "retry").inc(len(events))
                delay = self._backoff.delay(attempt)
                log.warning("delivery failed subscriber=%s events=%d first_uid=%s attempt=%d retry_in=%.2fs "
                            "error=%r", name, len(events), events[0].uid, attempt, delay, e)
                self._record(events, name, "retry", attempt, repr(e))
                await asyncio.sleep(delay)
                continue
            metrics.DELIVERIES.labels(name, "ok").inc(len(events))
            self._record(events, name, "ok", attempt, None)
            return

    # --- the journal -----------------------------------------------------------------------------

    def _record(self, events: list[InstanceEvent], subscriber: str, outcome: str, attempts: int,
                error: str | None) -> None:
        """Queue one outcome for the journal writer; never waits for the database."""
        if self._journal is None:
            return
        self._journal_log.append((events, subscriber, outcome, attempts, error))
        if self._journal_writer is None:
            self._idle.clear()
            self._journal_writer = asyncio.create_task(self._write_journal(), name="journal")

    async def _write_journal(self) -> None:
        """Write what was recorded, again and again until nothing is left: one write per run of
        entries with the same subscriber, outcome, attempts and error, so a pod's entries for
        one subscriber keep their order."""
        try:
            while self._journal_log:
                await self._while_batches_deliver()
                entries = list(self._journal_log)
                self._journal_log.clear()
                entries.sort(key=lambda e: e[1])  # stable: by subscriber, each in recorded order
                for (subscriber, outcome, attempts, error), run in itertools.groupby(
                        entries, key=lambda e: e[1:]):
                    events = [event for entry in run for event in entry[0]]
                    await self._write(events, subscriber, outcome, attempts, error)
        finally:
            self._journal_writer = None
            if not any(lane.workers for lane in self._lanes.values()):
                self._idle.set()

    async def _while_batches_deliver(self) -> None:
        """Give way to the batch lanes (the catalog) for up to ``JOURNAL_YIELD_S``: the journal's
        writes share the database's one write lock and the GIL with the catalog's commits, which are
        on the way to every gateway; written after a backlog is committed, not in the middle of it,
        the journal cost a 10,000-pod list about 0.1 s less. Waiting longer would only risk more
        unwritten entries on a crash."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOURNAL_YIELD_S
        while any(lane.queued for lane in self._lanes.values() if lane.batched) and loop.time() < deadline:
            await asyncio.sleep(JOURNAL_POLL_S)

    async def _write(self, events: list[InstanceEvent], subscriber: str, outcome: str, attempts: int,
                     error: str | None) -> None:
        journal = self._journal
        if journal is None:
            return
        try:
            if len(events) > 1 and hasattr(journal, "record_batch"):
                batch_journal: BatchJournal = journal  # type: ignore[assignment]
                await batch_journal.record_batch(events=events, subscriber=subscriber, outcome=outcome,
                                                 attempts=attempts, error=error)
            else:
                for event in events:
                    await journal.record(event=event, subscriber=subscriber, outcome=outcome,
                                         attempts=attempts, error=error)
        except Exception as e:  # the journal is a record, not a gate: delivery goes on
            log.warning("journal write failed subscriber=%s events=%d error=%r", subscriber, len(events), e)
