"""The monitor's bookkeeping: relists, tombstones, the grace period and leadership.

The catalog here is an in-memory subscriber that is also the catalog view; the real catalog
and the real cluster are exercised end to end in tests/e2e/test_monitor.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from bizcloud.monitor.dispatcher import Backoff, Dispatcher
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid
from bizcloud.monitor.monitor import Monitor
from tests.monitor.test_instances import pod, stopped


class MemoryCatalog:
    name = "catalog"

    def __init__(self) -> None:
        self.rows: dict[PodUid, Instance] = {}
        self.events: list[tuple[EventType, str]] = []

    async def handle(self, event: InstanceEvent) -> None:
        self.events.append((event.type, event.uid))
        if event.type is EventType.DOWN:
            self.rows.pop(event.uid, None)
        else:
            self.rows[event.uid] = event.instance

    async def instances(self) -> dict[PodUid, Instance]:
        return dict(self.rows)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts() -> tuple[Monitor, MemoryCatalog, Dispatcher, Clock]:
    catalog = MemoryCatalog()
    dispatcher = Dispatcher([catalog], backoff=Backoff(base=0.01, cap=0.02))
    clock = Clock()
    return Monitor(dispatcher, catalog, grace=5.0, clock=clock), catalog, dispatcher, clock


def serving(uid: str, **kw: Any) -> dict[str, Any]:
    return pod(uid=uid, **kw)


async def test_a_standby_dispatches_nothing_until_it_leads(parts: Any) -> None:
    monitor, catalog, dispatcher, _ = parts
    await monitor.on_sync([serving("a"), serving("b")], "10")
    await monitor.on_event("MODIFIED", serving("c"))
    await dispatcher.drain(timeout=2)
    assert catalog.rows == {}
    await monitor.start_leading()
    await dispatcher.drain(timeout=2)
    assert set(catalog.rows) == {"a", "b", "c"}


async def test_a_relist_turns_missed_deletes_into_down(parts: Any) -> None:
    monitor, catalog, dispatcher, _ = parts
    await monitor.start_leading()
    await monitor.on_sync([serving("a"), serving("b")], "10")
    await dispatcher.drain(timeout=2)
    await monitor.on_sync([serving("b")], "20")  # "a" was deleted while the watch was down
    await dispatcher.drain(timeout=2)
    assert set(catalog.rows) == {"b"}
    assert (EventType.DOWN, "a") in catalog.events


async def test_deletion_start_is_down_before_the_delete_event(parts: Any) -> None:
    monitor, catalog, dispatcher, _ = parts
    await monitor.start_leading()
    await monitor.on_sync([serving("a")], "10")
    await monitor.on_event("MODIFIED", serving("a", deleting=True))
    await dispatcher.drain(timeout=2)
    assert catalog.rows == {}
    await monitor.on_event("DELETED", serving("a", deleting=True))
    await dispatcher.drain(timeout=2)
    assert catalog.events == [(EventType.UP, "a"), (EventType.DOWN, "a")]


async def test_dirty_rows_wait_out_the_grace_period_and_missing_rows_are_added(parts: Any) -> None:
    monitor, catalog, dispatcher, clock = parts
    await monitor.start_leading()
    await monitor.on_sync([serving("a")], "10")
    await dispatcher.drain(timeout=2)
    ghost = Instance(service="web", env="dev", group=Group.NORMAL, namespace="bc-dev", pod="ghost",
                     uid=PodUid("ghost"), ip="10.0.0.9", ports={"http": 80}, ready=True)
    catalog.rows[PodUid("ghost")] = ghost            # a dirty row written by hand
    del catalog.rows[PodUid("a")]                    # a row lost

    first = await monitor.reconcile()
    await dispatcher.drain(timeout=2)
    assert (first.added, first.removed) == (1, 0)    # the lost row is back, the ghost waits
    assert set(catalog.rows) == {"a", "ghost"}

    clock.now += 6
    second = await monitor.reconcile()
    await dispatcher.drain(timeout=2)
    assert (second.added, second.removed) == (0, 1)
    assert set(catalog.rows) == {"a"}


async def test_a_tombstoned_row_goes_at_once(parts: Any) -> None:
    monitor, catalog, dispatcher, _ = parts
    await monitor.start_leading()
    await monitor.on_sync([serving("a")], "10")
    await dispatcher.drain(timeout=2)
    await monitor.stop_leading()                     # the DOWN is lost with the old leader
    await monitor.on_event("DELETED", serving("a"))
    await monitor.start_leading()
    await dispatcher.drain(timeout=2)
    assert catalog.rows == {}


async def test_nothing_is_reconciled_before_the_first_list(parts: Any) -> None:
    monitor, catalog, _, clock = parts
    catalog.rows[PodUid("alive")] = Instance(service="web", env="dev", group=Group.NORMAL, namespace="bc-dev",
                                             pod="alive", uid=PodUid("alive"), ip="10.0.0.2", ready=True)
    await monitor.start_leading()
    clock.now += 60
    assert (await monitor.reconcile()).removed == 0
    assert PodUid("alive") in catalog.rows


async def test_bad_pods_are_skipped_and_counted_with_their_reason(parts: Any) -> None:
    monitor, catalog, dispatcher, _ = parts
    await monitor.start_leading()
    name = "bizcloud_monitor_skipped_pods_total"
    before = REGISTRY.get_sample_value(name, {"reason": "bad_group"}) or 0.0
    bad = serving("x", labels={"bizcloud.io/service": "web", "bizcloud.io/group": "canary"})
    await monitor.on_sync([bad, serving("a")], "10")
    await monitor.on_event("MODIFIED", bad)
    await dispatcher.drain(timeout=2)
    assert REGISTRY.get_sample_value(name, {"reason": "bad_group"}) == before + 2
    assert set(catalog.rows) == {"a"}


async def test_authorization_hears_of_addresses_not_readiness(parts: Any) -> None:
    """A pod's IP arrives before Ready (so it is granted while starting); only a leader tells."""
    _, catalog, dispatcher, clock = parts
    kicks: list[str] = []
    monitor = Monitor(dispatcher, catalog, grace=5.0, clock=clock, on_addresses=kicks.append)
    await monitor.on_sync([], "1")
    await monitor.on_event("ADDED", serving("a", ready=False))
    assert kicks == []  # a standby: its leader's worker acts
    await monitor.start_leading()
    assert kicks == ["leading"]
    await monitor.on_event("ADDED", serving("b", ip=None, ready=False))
    await monitor.on_event("MODIFIED", serving("b", ready=False))
    await monitor.on_event("MODIFIED", serving("b"))
    await monitor.on_event("MODIFIED", serving("b", deleting=True))
    assert kicks[1:] == ["MODIFIED bc-dev/web-1 (b)"]  # the IP; not Ready, not the deletion (it drains)
    assert {i.uid for i in monitor.addressed()} == {"a", "b"} and not list(monitor.live())
    await monitor.on_event("MODIFIED", stopped(serving("b", deleting=True)))
    assert kicks[2:] == ["MODIFIED bc-dev/web-1 (b)"]  # its containers stopped: now revoke
    assert {i.uid for i in monitor.addressed()} == {"a"}
    await monitor.on_sync([serving("a", ready=False), serving("c", ready=False)], "9")
    assert kicks[-1] == "relist: 1 pods got or lost an address"


async def test_live_and_addressed_follow_every_change_of_the_table(parts: Any) -> None:
    """Both are kept between table changes (the authorization worker asks on every converge):
    each relist, arrival, change and deletion shows at once, and an unchanged pod keeps them."""
    monitor, *_ = parts

    def views() -> tuple[set[str], set[str]]:
        return {i.uid for i in monitor.live()}, {i.uid for i in monitor.addressed()}

    await monitor.on_sync([serving("a"), serving("b", ready=False)], "1")
    assert views() == ({"a"}, {"a", "b"})
    kept = monitor.addressed()
    await monitor.on_event("MODIFIED", serving("a"))  # nothing the monitor keeps changed
    assert monitor.addressed() is kept
    steps: list[tuple[str, dict[str, Any], tuple[set[str], set[str]]]] = [
        ("MODIFIED", serving("b"), ({"a", "b"}, {"a", "b"})),
        ("ADDED", serving("c", ip=None, ready=False), ({"a", "b"}, {"a", "b"})),
        ("MODIFIED", serving("c", ready=False), ({"a", "b"}, {"a", "b", "c"})),
        ("MODIFIED", serving("a", deleting=True), ({"b"}, {"a", "b", "c"})),
        ("MODIFIED", stopped(serving("a", deleting=True)), ({"b"}, {"b", "c"})),
        ("DELETED", serving("b"), (set(), {"c"})),
    ]
    for kind, obj, expected in steps:
        await monitor.on_event(kind, obj)
        assert views() == expected, (kind, obj["metadata"]["uid"])
    await monitor.on_sync([serving("d")], "9")
    assert views() == ({"d"}, {"d"})


async def test_a_list_arriving_in_chunks_is_dispatched_as_it_arrives(parts: Any) -> None:
    """Each chunk's pods go out at once; the end of the list adds only what the chunks could not
    tell (a known pod the list lacks), and nothing is sent twice."""
    monitor, catalog, dispatcher, _ = parts
    await monitor.start_leading()
    await monitor.on_sync([serving("gone"), serving("same"), serving("ready-later", ready=False)], "10")
    await dispatcher.drain(timeout=2)
    catalog.events.clear()
    listed = [serving("same"), serving("ready-later"), serving("new"), serving("tail")]
    await monitor.on_list_chunk(listed[:2], 0)
    await monitor.on_list_chunk(listed[2:3], 2)
    await dispatcher.drain(timeout=2)
    assert catalog.events == [(EventType.UP, "ready-later"), (EventType.UP, "new")]
    assert {i.uid for i in monitor.live()} == {"gone", "same", "ready-later", "new"}, \
        "the pod the list lacks stays until the list is complete"
    await monitor.on_sync(listed, "20")
    await dispatcher.drain(timeout=2)
    assert catalog.events[2:] == [(EventType.DOWN, "gone"), (EventType.UP, "tail")] or \
        catalog.events[2:] == [(EventType.UP, "tail"), (EventType.DOWN, "gone")]
    assert set(catalog.rows) == {"same", "ready-later", "new", "tail"}


async def test_chunks_of_an_unfinished_list_do_not_stand_for_the_next_one(parts: Any) -> None:
    """A stream that broke off after some chunks is followed by a new list (offset 0) or by a
    paginated one (no chunks): either way, the complete list is what the monitor ends up with."""
    monitor, catalog, dispatcher, _ = parts
    await monitor.start_leading()
    await monitor.on_list_chunk([serving("a"), serving("b")], 0)      # the stream breaks here
    await monitor.on_list_chunk([serving("c")], 0)                    # the next list's first chunk
    await monitor.on_sync([serving("c"), serving("d")], "30")
    await dispatcher.drain(timeout=2)
    assert set(catalog.rows) == {"c", "d"}

    await monitor.on_list_chunk([serving("c"), serving("d")], 0)      # broken off again
    await monitor.on_sync([serving("d"), serving("e")], "40")         # then a paginated list
    await dispatcher.drain(timeout=2)
    assert set(catalog.rows) == {"d", "e"}
    assert {i.uid for i in monitor.live()} == {"d", "e"}

    await monitor.on_list_chunk([serving("e")], 5)                    # a chunk without its start
    await monitor.on_sync([serving("e")], "50")
    await dispatcher.drain(timeout=2)
    assert set(catalog.rows) == {"e"}


async def test_a_standby_takes_chunks_into_its_table_and_replays_them_when_it_leads(parts: Any) -> None:
    monitor, catalog, dispatcher, _ = parts
    listed = [serving("a"), serving("b")]
    await monitor.on_list_chunk(listed[:1], 0)
    await dispatcher.drain(timeout=2)
    assert catalog.rows == {}
    await monitor.start_leading()
    await monitor.on_sync(listed, "10")
    await dispatcher.drain(timeout=2)
    assert sorted(catalog.events) == [(EventType.UP, "a"), (EventType.UP, "b")]
