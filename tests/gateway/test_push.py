"""The monitor's pushed changes on a real gateway: ahead of the change stream, and checked by it.

The server here looks at its database only every 30 s (its long polls, of 3 s, read it once at
their start), so the stream brings a commit seconds late unless it is woken by hand (the wake-up
datagram the monitor would send); the syncer's counters say what came by the pushed datagram
(``catalog/push.py``) and what the stream confirmed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bizcloud.catalog import push, wakeup
from bizcloud.catalog.store import CatalogStore, Committed, snapshot_of
from bizcloud.gateway.nginxconf import GatewayConfig, GatewayPaths
from bizcloud.gateway.runner import run_gateway
from bizcloud.gateway.syncer import Syncer
from bizcloud.monitor.model import EventType, InstanceEvent
from bizcloud.web.app import create_app
from tests.catalog.conftest import db_url, engine, event, instance, store  # noqa: F401
from tests.catalog.test_api import serving
from tests.gateway.conftest import Backend, Gateway, backends, eventually  # noqa: F401
from tests.gateway.test_gateway import _peers, _route, _up

GATEWAY_PORT, ADMIN_PORT = 18782, 18783   # this suite's range: 18700-18799


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Pushed:
    gateway: Gateway
    syncer: Syncer
    feed: tuple[str, int]       # where the gateway takes pushed changes
    wakeup: tuple[str, int]     # where the server takes wake-ups

    def send(self, changes: list[dict[str, object]]) -> None:
        for datagram in push.encode(changes):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(datagram, self.feed)

    def wake_the_stream(self, revision: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(wakeup.encode(revision), self.wakeup)

    store: CatalogStore   # the monitor's store: every commit is pushed by the real ChangePusher


@pytest.fixture
def pushed(db_url: str, store: CatalogStore, tmp_path: Path) -> Iterator[Pushed]:  # noqa: F811
    # the route before the gateway starts: a ROUTE change is never taken from a push
    store.create_service(name="shop", description="", owner="")
    store.create_environment(name="dev", namespace="bc-dev")
    _route(store)
    wake = ("127.0.0.1", free_udp_port())
    with serving(create_app(database_url=db_url, poll_interval=30.0, wakeup=wake)) as base_url:
        config = GatewayConfig(host="127.0.0.1", port=GATEWAY_PORT, admin_port=ADMIN_PORT, workers=2,
                               access_log=False)
        gw = Gateway(url=f"http://127.0.0.1:{GATEWAY_PORT}", admin=f"http://127.0.0.1:{ADMIN_PORT}",
                     paths=GatewayPaths(tmp_path / "gw"))
        feed = ("127.0.0.1", free_udp_port())
        syncer = Syncer(catalog_url=base_url, targets=[gw.admin], wait_s=3.0)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=lambda: loop.run_until_complete(run_gateway(
            config=config, prefix=gw.paths.prefix, catalog_url=base_url, stop=stop, wait_s=3.0,
            feed=feed, syncer=syncer)), daemon=True)
        thread.start()
        eventually(lambda: syncer.pushes > 0 or _answers(gw), what="the gateway started", timeout=20)
        time.sleep(0.3)   # the syncer's first long poll is waiting
        pusher = push.ChangePusher([feed], max_changes=2)
        yield Pushed(gateway=gw, syncer=syncer, feed=feed, wakeup=wake,
                     store=CatalogStore(store.engine, on_commit=pusher))
        pusher.close()
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=40)
        assert not thread.is_alive()


def _event(kind: EventType, backend: Backend) -> InstanceEvent:
    return event(kind, instance(backend.name, service="shop", ip="127.0.0.1", ports={"http": backend.port}))


def _answers(gw: Gateway) -> bool:
    try:
        gw.table()
    except Exception:
        return False
    return True


def test_a_pushed_commit_is_routable_before_the_stream_answers_and_the_stream_agrees(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a, b, _, _ = backends
    revision = store.latest_revision()
    _up(pushed.store, a)
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=2, what="the pushed UP in nginx")
    assert pushed.syncer.taken == 1
    pushed.store.apply_events(events=[_event(EventType.UP, b), _event(EventType.DOWN, a)])
    eventually(lambda: _peers(pushed.gateway) == {b.port}, timeout=2, what="the pushed UP and DOWN")
    assert pushed.syncer.taken == 3
    pushed.wake_the_stream(revision + 3)
    eventually(lambda: not pushed.syncer._unconfirmed, timeout=5, what="the stream confirming the pushes")
    assert pushed.syncer.reseeds == 0
    assert _peers(pushed.gateway) == {b.port}
    assert pushed.gateway.table()["revision"] == revision + 3


def test_a_forged_push_is_undone_when_the_stream_disagrees(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a = backends[0]
    revision = store.latest_revision()
    forged = instance("forged", service="shop", ip="10.9.9.9", ports={"http": 80})
    pushed.send([{"revision": revision + 1, "type": "UP", "uid": "forged", "service": "shop", "env": "dev",
                  "group": "normal", "instance": snapshot_of(forged), "at": "x"}])
    eventually(lambda: 80 in _peers(pushed.gateway), timeout=2, what="the forged push applied ahead")
    assert pushed.syncer.taken == 1
    _up(store, a)                                  # what really happened at that revision
    pushed.wake_the_stream(revision + 1)
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=10,
               what="the catalog's truth after re-seeding")
    assert pushed.syncer.reseeds == 1


def test_a_push_after_a_hole_waits_for_the_stream(pushed: Pushed, store: CatalogStore,  # noqa: F811
                                                  backends: list[Backend]) -> None:  # noqa: F811
    a, b, _, _ = backends
    revision = store.latest_revision()
    _up(store, a)
    _up(store, b)
    rows = store.changes_since(revision=revision + 1, limit=10)   # only the second: a hole before it
    pushed.send([push.change_json(c) for c in rows])
    time.sleep(0.5)
    assert pushed.syncer.taken == 0
    pushed.wake_the_stream(revision + 2)
    eventually(lambda: _peers(pushed.gateway) == {a.port, b.port}, timeout=5, what="the stream's changes")


@pytest.mark.parametrize(("sizes", "datagrams"), [([1], 1), ([100] * 3, 1), ([20_000] * 7, 4)],
                         ids=["one", "a few", "split"])
def test_datagrams_stay_small_and_carry_every_change_in_order(sizes: list[int], datagrams: int) -> None:
    changes = [{"revision": 10 + i, "type": "UP", "instance": {"pad": "x" * n}} for i, n in enumerate(sizes)]
    encoded = push.encode(changes)
    assert len(encoded) == datagrams and all(len(d) <= push.MAX_DATAGRAM for d in encoded)
    assert [c for d in encoded for c in push.decode(d) or []] == changes


@pytest.mark.parametrize("datagram", [
    b"bizcloud-catalog 5", b"bizcloud-changes not json", b'bizcloud-changes {"changes": []}',
    b'bizcloud-changes {"changes": [{"revision": "1", "type": "UP", "instance": {}}]}',
    b'bizcloud-changes {"changes": [{"revision": 1, "type": "UP", "instance": {}}, '
    b'{"revision": 3, "type": "UP", "instance": {}}]}',
], ids=["a wake-up", "not JSON", "empty", "revision not a number", "a hole inside"])
def test_what_is_not_a_well_formed_push_is_ignored(datagram: bytes) -> None:
    assert push.decode(datagram) is None


def test_a_commit_bigger_than_the_limit_is_left_to_the_stream_and_pushes_resume_after_it(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a, b, c, d = backends
    revision = store.latest_revision()
    pushed.store.apply_events(events=[_event(EventType.UP, x) for x in (a, b, c)])   # 3 > max_changes=2
    time.sleep(0.5)
    assert pushed.syncer.taken == 0 and _peers(pushed.gateway) == set()
    pushed.wake_the_stream(revision + 3)
    eventually(lambda: _peers(pushed.gateway) == {a.port, b.port, c.port}, timeout=5,
               what="the stream's page")
    _up(pushed.store, d)
    eventually(lambda: d.port in _peers(pushed.gateway), timeout=2, what="the next commit, pushed")
    assert pushed.syncer.taken == 1


def test_what_is_pushed_is_what_the_stream_serves(store: CatalogStore) -> None:  # noqa: F811
    committed: list[Committed] = []
    monitors = CatalogStore(store.engine, on_commit=committed.append)
    monitors.apply_event(event=event(EventType.UP, instance("u1", service="shop")))
    monitors.apply_events(events=[event(EventType.DOWN, instance("u1", service="shop")),
                                  event(EventType.UP, instance("u2", service="shop", ip="10.0.0.2"))])
    monitors.apply_event(event=event(EventType.UP, instance("u2", service="shop", ip="10.0.0.2")))  # no-op
    pushed = [push.change_json(c) for batch in committed for c in batch.changes()]
    streamed = [push.change_json(c) for c in store.changes_since(revision=0, limit=10)]
    assert [c["type"] for c in pushed] == ["UP", "DOWN", "UP"]
    assert [c["revision"] for c in pushed] == [c["revision"] for c in streamed]
    assert [b.revision for b in committed] == [pushed[0]["revision"], pushed[2]["revision"]]  # not the no-op
    assert pushed == streamed
