"""The catalog as the monitor's subscriber, catalog view and journal."""

from __future__ import annotations

import time

from bizcloud.catalog.store import CatalogStore
from bizcloud.catalog.subscriber import CatalogSubscriber
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
