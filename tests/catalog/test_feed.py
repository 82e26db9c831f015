"""The revision watch: one poller, only while someone waits, waking every waiter it passes."""

from __future__ import annotations

import asyncio
import threading

from bizcloud.catalog.feed import RevisionWatch


class Counter:
    """Stands in for ``CatalogStore.latest_revision`` (a plain callable; no database needed here)."""

    def __init__(self) -> None:
        self.value = 0
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.value


async def test_polls_only_while_someone_waits() -> None:
    latest = Counter()
    watch = RevisionWatch(latest, interval=0.01)
    await asyncio.sleep(0.05)
    assert latest.calls == 0 and not watch.polling
    assert await watch.wait_beyond(0, timeout=0.05) is False
    await asyncio.sleep(0.05)
    assert not watch.polling
    calls = latest.calls
    await asyncio.sleep(0.05)
    assert latest.calls == calls


async def test_wakes_the_waiters_it_passes_and_only_them() -> None:
    latest = Counter()
    watch = RevisionWatch(latest, interval=0.01)
    low = asyncio.create_task(watch.wait_beyond(0, timeout=2))
    high = asyncio.create_task(watch.wait_beyond(5, timeout=0.3))
    await asyncio.sleep(0.05)
    latest.value = 1
    assert await asyncio.wait_for(low, 1) is True
    assert await high is False


async def test_close_releases_waiters() -> None:
    watch = RevisionWatch(Counter(), interval=0.01)
    waiter = asyncio.create_task(watch.wait_beyond(0, timeout=10))
    await asyncio.sleep(0.05)
    await watch.close()
    assert await asyncio.wait_for(waiter, 1) is False
    assert not watch.polling


async def test_stops_as_the_last_waiter_leaves_even_in_a_slow_read() -> None:
    """The flake this pins: under load the poller's read (a worker thread) outlived the waiter, so
    ``polling`` stayed True after the waiter left and a read ran after it. Now it stops at once."""
    release = threading.Event()

    class Slow(Counter):
        def __call__(self) -> int:
            self.calls += 1
            release.wait(2)
            return self.value

    latest = Slow()
    watch = RevisionWatch(latest, interval=0.01)
    assert await watch.wait_beyond(0, timeout=0.05) is False
    assert not watch.polling
    release.set()
    calls = latest.calls
    await asyncio.sleep(0.05)
    assert latest.calls == calls and not watch.polling
    # and a new waiter gets a poller of its own
    latest.value = 3
    assert await watch.wait_beyond(0, timeout=1) is True
