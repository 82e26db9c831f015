"""Delivers instance events to subscribers: in order per pod, in parallel across pods.

One queue and one worker per (subscriber, pod uid), as kopf does per object: a pod's events
reach a subscriber in the order they happened, different pods proceed in parallel, and a slow or
failing subscriber only delays its own queues. Delivery is at-least-once: a failed event is
retried with capped exponential backoff until it succeeds (subscribers are idempotent), and each
attempt's outcome is journaled. Workers exit when their queue drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bizcloud.monitor import metrics
from bizcloud.monitor.model import InstanceEvent, PodUid
from bizcloud.monitor.protocols import Journal, Subscriber

log = logging.getLogger("bizcloud.monitor.dispatcher")


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
    """One subscriber's queues and workers."""

    subscriber: Subscriber
    queues: dict[PodUid, asyncio.Queue[InstanceEvent]] = field(default_factory=dict)
    workers: dict[PodUid, asyncio.Task[None]] = field(default_factory=dict)

    def depth(self) -> int:
        return sum(q.qsize() for q in self.queues.values()) + len(self.workers)


class Dispatcher:
    """Fan events out to subscribers registered by name."""

    def __init__(self, subscribers: Sequence[Subscriber], *, journal: Journal | None = None,
                 backoff: Backoff | None = None) -> None:
        names = [s.name for s in subscribers]
        if len(set(names)) != len(names):
            raise ValueError(f"subscriber names must be unique: {names}")
        self._lanes = {s.name: _Lane(s) for s in subscribers}
        self._journal = journal
        self._backoff = backoff or Backoff()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def subscribers(self) -> list[str]:
        return list(self._lanes)

    def depth(self, subscriber: str) -> int:
        return self._lanes[subscriber].depth()

    def busy(self, uid: PodUid) -> bool:
        """Whether an event of this pod is still queued or being delivered to some subscriber."""
        return any(uid in lane.workers for lane in self._lanes.values())

    def submit(self, event: InstanceEvent) -> None:
        """Queue ``event`` for every subscriber; never blocks."""
        metrics.EVENTS.labels(event.type.value).inc()
        for lane in self._lanes.values():
            queue = lane.queues.setdefault(event.uid, asyncio.Queue())
            queue.put_nowait(event)
            if event.uid not in lane.workers:
                lane.workers[event.uid] = asyncio.create_task(self._work(lane, event.uid),
                                                              name=f"{lane.subscriber.name}:{event.uid}")
            metrics.QUEUE_DEPTH.labels(lane.subscriber.name).set(lane.depth())
        self._idle.clear()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued event has been delivered (tests, clean shutdown)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self) -> None:
        """Cancel every worker; undelivered events are dropped (the next leader reconciles)."""
        tasks = [t for lane in self._lanes.values() for t in lane.workers.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for lane in self._lanes.values():
            lane.queues.clear()
            lane.workers.clear()
            metrics.QUEUE_DEPTH.labels(lane.subscriber.name).set(0)
        self._idle.set()

    async def _work(self, lane: _Lane, uid: PodUid) -> None:
        queue = lane.queues[uid]
        try:
            while not queue.empty():
                event = queue.get_nowait()
                await self._deliver(lane.subscriber, event)
                metrics.QUEUE_DEPTH.labels(lane.subscriber.name).set(lane.depth() - 1)
        finally:
            if lane.queues.get(uid) is queue and queue.empty():
                del lane.queues[uid]
            lane.workers.pop(uid, None)
            metrics.QUEUE_DEPTH.labels(lane.subscriber.name).set(lane.depth())
            if not any(lane.workers for lane in self._lanes.values()):
                self._idle.set()

    async def _deliver(self, subscriber: Subscriber, event: InstanceEvent) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await subscriber.handle(event)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a subscriber's failure is retried, never propagated
                metrics.DELIVERIES.labels(subscriber.name, "retry").inc()
                delay = self._backoff.delay(attempt)
                log.warning("delivery failed subscriber=%s uid=%s type=%s attempt=%d retry_in=%.2fs error=%r",
                            subscriber.name, event.uid, event.type.value, attempt, delay, e)
                await self._record(event, subscriber.name, "retry", attempt, repr(e))
                await asyncio.sleep(delay)
                continue
            metrics.DELIVERIES.labels(subscriber.name, "ok").inc()
            if event.observed_at:
                metrics.LATENCY.labels(subscriber.name).observe(max(0.0, time.time() - event.observed_at))
            await self._record(event, subscriber.name, "ok", attempt, None)
            return

    async def _record(self, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                      error: str | None) -> None:
        if self._journal is None:
            return
        try:
            await self._journal.record(event=event, subscriber=subscriber, outcome=outcome,
                                       attempts=attempts, error=error)
        except Exception as e:  # the journal is a record, not a gate: delivery goes on
            log.warning("journal write failed subscriber=%s uid=%s error=%r", subscriber, event.uid, e)
