"""Delivery guarantees of the dispatcher, with recording subscribers (the real ones are tested e2e)."""

from __future__ import annotations

import asyncio
import time

from bizcloud.monitor import metrics
from bizcloud.monitor.dispatcher import JOURNAL_YIELD_S, Backoff, Dispatcher
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid

FAST = Backoff(base=0.01, cap=0.05)


def event(uid: str, kind: EventType = EventType.UP, rv: str = "1") -> InstanceEvent:
    inst = Instance(service="web", env="dev", group=Group.NORMAL, namespace="bc-dev", pod=f"pod-{uid}",
                    uid=PodUid(uid), ip="10.0.0.1", ports={"http": 80}, ready=True)
    return InstanceEvent(type=kind, instance=inst, resource_version=rv, observed_at=time.time())


class Recorder:
    def __init__(self, name: str, *, delay: float = 0.0, fail_first: int = 0) -> None:
        self.name = name
        self.delay = delay
        self.fail_first = fail_first
        self.calls = 0
        self.seen: list[tuple[str, str]] = []
        self.active = 0
        self.max_active = 0

    async def handle(self, e: InstanceEvent) -> None:
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            if self.calls <= self.fail_first:
                raise RuntimeError("database is down")
            self.seen.append((e.uid, e.resource_version))
        finally:
            self.active -= 1


class MemoryJournal:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, int]] = []

    async def record(self, *, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                     error: str | None = None) -> None:
        self.rows.append((event.uid, subscriber, outcome, attempts))


async def test_one_pods_events_arrive_in_order() -> None:
    sub = Recorder("a", delay=0.001)
    d = Dispatcher([sub], backoff=FAST)
    for rv in range(20):
        d.submit(event("p1", rv=str(rv)))
    await d.drain(timeout=5)
    assert [rv for _, rv in sub.seen] == [str(rv) for rv in range(20)]


async def test_different_pods_are_delivered_in_parallel() -> None:
    sub = Recorder("a", delay=0.05)
    d = Dispatcher([sub], backoff=FAST)
    started = time.monotonic()
    for i in range(20):
        d.submit(event(f"p{i}"))
    await d.drain(timeout=5)
    assert sub.max_active == 20
    assert time.monotonic() - started < 0.5  # 20 x 50 ms one after another would take 1 s


async def test_a_failing_subscriber_is_retried_and_never_blocks_another() -> None:
    failing, healthy = Recorder("failing", fail_first=3), Recorder("healthy")
    journal = MemoryJournal()
    d = Dispatcher([failing, healthy], journal=journal, backoff=FAST)
    d.submit(event("p1"))
    await asyncio.sleep(0.005)
    assert healthy.seen == [("p1", "1")]  # delivered while the other is still failing
    await d.drain(timeout=5)
    assert failing.seen == [("p1", "1")]
    assert [r for r in journal.rows if r[1] == "failing"] == [
        ("p1", "failing", "retry", 1), ("p1", "failing", "retry", 2), ("p1", "failing", "retry", 3),
        ("p1", "failing", "ok", 4)]
    assert ("p1", "healthy", "ok", 1) in journal.rows


async def test_a_retrying_event_holds_back_later_events_of_the_same_pod_only() -> None:
    sub = Recorder("a", fail_first=2)
    d = Dispatcher([sub], backoff=FAST)
    d.submit(event("p1", EventType.UP, "1"))
    d.submit(event("p1", EventType.DOWN, "2"))
    await d.drain(timeout=5)
    assert sub.seen == [("p1", "1"), ("p1", "2")]


async def test_stop_cancels_pending_work() -> None:
    sub = Recorder("a", delay=10)
    d = Dispatcher([sub], backoff=FAST)
    d.submit(event("p1"))
    await asyncio.sleep(0.01)
    assert d.depth("a") == 1
    await d.stop()
    assert d.depth("a") == 0
    await d.drain(timeout=1)


class BatchRecorder:
    def __init__(self, name: str, *, fail_first: int = 0) -> None:
        self.name = name
        self.fail_first = fail_first
        self.calls = 0
        self.batches: list[list[tuple[str, str]]] = []

    async def handle_batch(self, events: list[InstanceEvent]) -> None:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.calls <= self.fail_first:
            raise RuntimeError("database is down")
        self.batches.append([(e.uid, e.resource_version) for e in events])


async def test_a_batch_subscriber_gets_everything_queued_at_once_in_order() -> None:
    batch = BatchRecorder("catalog")
    d = Dispatcher([batch], backoff=FAST)
    for rv in range(3):
        for uid in ("p1", "p2"):
            d.submit(event(uid, rv=str(rv)))
    assert d.busy(PodUid("p1"))
    await d.drain(timeout=5)
    delivered = [item for b in batch.batches for item in b]
    assert [rv for uid, rv in delivered if uid == "p1"] == ["0", "1", "2"]
    assert len(batch.batches) <= 2  # the first event starts a batch; the rest follow together
    assert not d.busy(PodUid("p1"))
    assert d.finished_at(PodUid("p1")) > 0


async def test_many_events_submitted_at_once_reach_every_lane_in_order_and_are_counted() -> None:
    plain, batch = Recorder("plain"), BatchRecorder("catalog")
    d = Dispatcher([plain, batch], backoff=FAST)
    ups = metrics.EVENTS.labels("UP")._value.get()
    downs = metrics.EVENTS.labels("DOWN")._value.get()
    events = [event(uid, kind=kind, rv=str(rv)) for rv, kind in enumerate([EventType.UP, EventType.DOWN] * 2)
              for uid in ("p1", "p2", "p3")]
    d.submit_many(events)
    assert d.depth("plain") == d.depth("catalog") == 12
    assert metrics.QUEUE_DEPTH.labels("catalog")._value.get() == 12
    assert d.busy(PodUid("p3"))
    await d.drain(timeout=5)
    for uid in ("p1", "p2", "p3"):
        assert [rv for u, rv in plain.seen if u == uid] == ["0", "1", "2", "3"]
        assert [rv for b in batch.batches for u, rv in b if u == uid] == ["0", "1", "2", "3"]
    assert metrics.EVENTS.labels("UP")._value.get() - ups == 6
    assert metrics.EVENTS.labels("DOWN")._value.get() - downs == 6
    assert d.depth("plain") == d.depth("catalog") == 0
    d.submit_many([])
    assert not d.busy(PodUid("p1"))


async def test_a_failed_batch_is_retried_whole_and_journaled_once_per_attempt() -> None:
    batch, journal = BatchRecorder("catalog", fail_first=2), MemoryJournal()
    d = Dispatcher([batch], journal=journal, backoff=FAST)
    d.submit(event("p1"))
    await d.drain(timeout=5)
    assert batch.batches == [[("p1", "1")]]
    assert [(r[2], r[3]) for r in journal.rows] == [("retry", 1), ("retry", 2), ("ok", 3)]


class SlowJournal(MemoryJournal):
    """A journal on a busy database: each write takes ``delay`` and writes are counted."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.writes = 0

    async def record(self, *, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                     error: str | None = None) -> None:
        await self.record_batch(events=[event], subscriber=subscriber, outcome=outcome, attempts=attempts)

    async def record_batch(self, *, events: list[InstanceEvent], subscriber: str, outcome: str,
                           attempts: int, error: str | None = None) -> None:
        self.writes += 1
        await asyncio.sleep(self.delay)
        self.rows.extend((e.uid, subscriber, outcome, attempts) for e in events)


async def test_journaling_never_holds_up_the_next_delivery_and_drain_waits_for_it() -> None:
    batch, plain, journal = BatchRecorder("catalog"), Recorder("soa"), SlowJournal(delay=0.3)
    d = Dispatcher([batch, plain], journal=journal, backoff=FAST)
    d.submit(event("p1"))
    await asyncio.sleep(0.05)                 # delivered; its journal write has begun (0.3 s)
    started = time.monotonic()
    for i in range(2, 12):
        d.submit(event(f"p{i}"))
    while len([e for b in batch.batches for e in b]) < 11:
        await asyncio.sleep(0.005)
    assert time.monotonic() - started < 0.2, "the catalog waited for the journal"
    await d.drain(timeout=5)
    assert sorted(r[0] for r in journal.rows if r[1] == "catalog") == sorted(f"p{i}" for i in range(1, 12))
    assert {r[0] for r in journal.rows if r[1] == "soa"} == {f"p{i}" for i in range(1, 12)}
    assert journal.writes <= 6, "outcomes recorded meanwhile are written together"


class SlowBatches(BatchRecorder):
    """A catalog whose every batch takes ``delay`` (a commit of thousands of rows)."""

    def __init__(self, name: str, delay: float) -> None:
        super().__init__(name)
        self.delay = delay
        self.done_at: list[float] = []

    async def handle_batch(self, events: list[InstanceEvent]) -> None:
        await asyncio.sleep(self.delay)
        await super().handle_batch(events)
        self.done_at.append(time.monotonic())


class TimedJournal(MemoryJournal):
    def __init__(self) -> None:
        super().__init__()
        self.written_at: list[float] = []

    async def record(self, *, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                     error: str | None = None) -> None:
        await self.record_batch(events=[event], subscriber=subscriber, outcome=outcome, attempts=attempts)

    async def record_batch(self, *, events: list[InstanceEvent], subscriber: str, outcome: str,
                           attempts: int, error: str | None = None) -> None:
        self.written_at.append(time.monotonic())
        self.rows.extend((e.uid, subscriber, outcome, attempts) for e in events)


async def test_the_journal_waits_while_the_catalog_delivers_a_backlog_but_not_for_ever() -> None:
    catalog, journal = SlowBatches("catalog", delay=0.1), TimedJournal()
    d = Dispatcher([catalog], journal=journal, backoff=FAST, max_batch=2)
    for i in range(6):                         # three batches, one after another: ~0.35 s
        d.submit(event(f"p{i}"))
    await d.drain(timeout=5)
    assert len(catalog.done_at) == 3 and journal.written_at
    assert min(journal.written_at) >= catalog.done_at[-1], "a journal write went between the commits"
    assert sorted(r[0] for r in journal.rows) == [f"p{i}" for i in range(6)]

    slow, quick, journal = SlowBatches("catalog", delay=3.0), Recorder("soa"), TimedJournal()
    d = Dispatcher([slow, quick], journal=journal, backoff=FAST)
    started = time.monotonic()
    d.submit(event("p1"))                      # soa takes it at once; the catalog commits for 3 s
    while not journal.written_at:
        await asyncio.sleep(0.01)
    waited = journal.written_at[0] - started
    assert JOURNAL_YIELD_S - 0.1 < waited < JOURNAL_YIELD_S + 0.5, f"the journal waited {waited:.2f} s"
    assert journal.rows == [("p1", "soa", "ok", 1)]
    await d.stop()
