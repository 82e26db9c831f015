"""The catalog as the monitor's subscriber, catalog view and journal."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from sqlalchemy import Engine

from bizcloud.catalog.store import CatalogStore
from bizcloud.catalog.subscriber import INLINE_MAX, CatalogSubscriber
from bizcloud.monitor import protocols
from bizcloud.monitor.model import EventType
from tests.catalog.conftest import event, instance


async def test_handle_commits_and_exposes_the_revision(store: CatalogStore) -> None:
    sub = CatalogSubscriber(store)
    before = time.time()
    await sub.handle(event(EventType.UP, instance("a")))
    assert sub.last_revision == store.latest_revision() == 1
    assert sub.last_committed_at is not None and sub.last_committed_at >= before
    await sub.handle(event(EventType.UP, instance("a")))  # a replay changes nothing
    assert sub.last_revision == store.latest_revision() == 1
    assert set(await sub.instances()) == {"a"}


async def test_it_journals(store: CatalogStore) -> None:
    sub = CatalogSubscriber(store)
    await sub.record(event=event(EventType.DOWN, instance("a")), subscriber="gateway", outcome="failed",
                     attempts=5, error="connection refused")
    [entry] = store.journal()
    assert (entry["subscriber"], entry["outcome"]) == ("gateway", "failed")
    assert entry["error"] == "connection refused"


def test_it_satisfies_the_monitor_protocols(store: CatalogStore) -> None:
    sub = CatalogSubscriber(store)
    as_subscriber: protocols.Subscriber = sub
    as_view: protocols.CatalogView = sub
    as_journal: protocols.Journal = sub
    assert as_subscriber.name == "catalog" and as_view and as_journal


async def test_a_small_batch_commits_on_the_loop_and_a_big_or_blocked_one_on_the_commit_thread(
        engine: Engine, db_url: str) -> None:
    committed_on: list[str] = []
    store = CatalogStore(engine, on_commit=lambda _: committed_on.append(threading.current_thread().name))
    sub = CatalogSubscriber(store)
    loop_thread = threading.current_thread().name

    await sub.handle_batch([event(EventType.UP, instance("small"))])
    assert committed_on == [loop_thread]

    big = [event(EventType.UP, instance(f"big-{i}", ip=f"10.1.0.{i}")) for i in range(INLINE_MAX + 1)]
    await sub.handle_batch(big)
    assert committed_on[-1].startswith("catalog-commit")

    other = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")   # another process writing: the loop must not wait for it
    try:
        blocked = [event(EventType.UP, instance("blocked", ip="10.2.0.1"))]
        handled = asyncio.create_task(sub.handle_batch(blocked))
        await asyncio.sleep(0.3)
        assert not handled.done()          # waiting on the commit thread, while the loop runs on
        other.execute("COMMIT")
        await asyncio.wait_for(handled, 10)
    finally:
        other.close()
    assert committed_on[-1].startswith("catalog-commit")
    assert {"small", "blocked", "big-0"} <= set(await sub.instances())
