"""The monitor's direct pushes on a real gateway: into nginx ahead of the change stream, the authority.

The server here looks at its database only every 30 s (its long polls, of 3 s, read it once at
their start), so the stream brings a commit late unless it is woken by hand (the wake-up
datagram the monitor would send). The pusher (``gateway/direct.py``) runs on an event loop of its
own thread, as in the monitor, and the store calls it after each commit from the committing thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import REGISTRY

from bizcloud.catalog import wakeup
from bizcloud.catalog.schemas import ChangePublic
from bizcloud.catalog.store import CatalogStore, Committed, snapshot_of
from bizcloud.gateway.direct import Answers, NginxPusher, request_bytes
from bizcloud.gateway.nginxconf import GatewayConfig, GatewayPaths
from bizcloud.gateway.runner import run_gateway
from bizcloud.gateway.syncer import Syncer
from bizcloud.gateway.upstreams import RoutingState, commit_body
from bizcloud.kube.http1 import MalformedResponse
from bizcloud.monitor.model import EventType, InstanceEvent
from bizcloud.web.app import create_app
from tests.catalog.conftest import db_url, engine, event, instance, store  # noqa: F401
from tests.catalog.test_api import serving
from tests.gateway.conftest import Backend, Gateway, backends, eventually  # noqa: F401
from tests.gateway.test_gateway import _peers, _route, _up

GATEWAY_PORT, ADMIN_PORT = 18782, 18783   # this suite's range: 18700-18799
T = TypeVar("T")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Pushed:
    gateway: Gateway
    syncer: Syncer
    pusher: NginxPusher
    loop: asyncio.AbstractEventLoop   # the pusher's (the monitor's event loop)
    wakeup: tuple[str, int]           # where the server takes wake-ups
    store: CatalogStore               # the monitor's store: every commit goes to the pusher

    def wake_the_stream(self, revision: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(wakeup.encode(revision), self.wakeup)

    def on_loop(self, call: Callable[[], T]) -> T:
        """``call()`` run on the pusher's loop, as the monitor commits small batches."""
        async def run() -> T:
            return call()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)


@pytest.fixture
def pushed(db_url: str, store: CatalogStore, tmp_path: Path) -> Iterator[Pushed]:  # noqa: F811
    # the route before the gateway starts: routes come from the syncer alone
    store.create_service(name="shop", description="", owner="")
    store.create_environment(name="dev", namespace="bc-dev")
    _route(store)
    wake = ("127.0.0.1", free_udp_port())
    with serving(create_app(database_url=db_url, poll_interval=30.0, wakeup=wake)) as base_url:
        config = GatewayConfig(host="127.0.0.1", port=GATEWAY_PORT, admin_port=ADMIN_PORT, workers=2,
                               access_log=False)
        gw = Gateway(url=f"http://127.0.0.1:{GATEWAY_PORT}", admin=f"http://127.0.0.1:{ADMIN_PORT}",
                     paths=GatewayPaths(tmp_path / "gw"))
        syncer = Syncer(catalog_url=base_url, targets=[gw.admin], wait_s=3.0, verify_s=1.0)
        gateway_loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=lambda: gateway_loop.run_until_complete(run_gateway(
            config=config, prefix=gw.paths.prefix, catalog_url=base_url, stop=stop, wait_s=3.0,
            syncer=syncer)), daemon=True)
        thread.start()
        eventually(lambda: syncer.pushes > 0 or _answers(gw), what="the gateway started", timeout=20)
        time.sleep(0.3)   # the syncer's first long poll is waiting
        monitor_loop = asyncio.new_event_loop()
        monitor = threading.Thread(target=monitor_loop.run_forever, daemon=True)
        monitor.start()

        async def make() -> NginxPusher:
            return NginxPusher([("127.0.0.1", ADMIN_PORT)], max_changes=2)
        pusher = asyncio.run_coroutine_threadsafe(make(), monitor_loop).result(timeout=5)
        yield Pushed(gateway=gw, syncer=syncer, pusher=pusher, loop=monitor_loop, wakeup=wake,
                     store=CatalogStore(store.engine, on_commit=pusher))
        asyncio.run_coroutine_threadsafe(pusher.aclose(), monitor_loop).result(timeout=5)
        monitor_loop.call_soon_threadsafe(monitor_loop.stop)
        monitor.join(timeout=5)
        gateway_loop.call_soon_threadsafe(stop.set)
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


def test_a_commit_is_routable_before_the_stream_answers_and_the_stream_agrees(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a, b, _, _ = backends
    revision, syncer_pushes = store.latest_revision(), pushed.syncer.pushes
    _up(pushed.store, a)                                   # committed on this thread: handed to the loop
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=2, what="the pushed UP in nginx")
    pushed.on_loop(lambda: pushed.store.apply_events(events=[_event(EventType.UP, b),
                                                             _event(EventType.DOWN, a)]))   # on the loop
    eventually(lambda: _peers(pushed.gateway) == {b.port}, timeout=2, what="the pushed UP and DOWN")
    assert pushed.pusher.outcomes() == {"applied": 2}
    assert pushed.syncer.pushes == syncer_pushes, "the stream had not answered yet"
    pushed.wake_the_stream(revision + 3)
    eventually(lambda: pushed.syncer.pushes > syncer_pushes, timeout=5, what="the stream's delta")
    assert _peers(pushed.gateway) == {b.port}
    assert pushed.gateway.table()["revision"] == revision + 3


def test_what_the_stream_brings_overrides_a_wrong_push(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a = backends[0]
    revision = store.latest_revision()
    wrong = {"revision": revision + 1, "base": revision, "full": False,
             "peers": {"shop/dev": {"put": [{"group": "normal", "uid": a.name, "ip": "127.0.0.1", "port": 1}],
                                    "drop": []}}}
    answer = httpx.post(f"{pushed.gateway.admin}/bizcloud/upstreams", content=json.dumps(wrong), timeout=5)
    assert answer.status_code == 200 and _peers(pushed.gateway) == {1}
    _up(store, a)                                   # what really happened at that revision (not pushed)
    pushed.wake_the_stream(revision + 1)
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=10, what="the stream's truth for the peer")


def test_a_wrong_peer_the_stream_never_touches_again_is_found_and_repaired(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    """A push that put a peer nobody has, at the revision nginx was already at: no later delta
    touches it, so only reading the table back finds it (the syncer does, every ``verify_s``)."""
    a = backends[0]
    _up(store, a)
    pushed.wake_the_stream(store.latest_revision())
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=10, what="the stream's peer")
    revision = pushed.gateway.table()["revision"]
    ghost = {"group": "normal", "uid": "ghost", "ip": "127.0.0.1", "port": 1}
    wrong = {"revision": revision, "base": revision, "full": False,
             "peers": {"shop/dev": {"put": [ghost], "drop": []}}}
    answer = httpx.post(f"{pushed.gateway.admin}/bizcloud/upstreams", content=json.dumps(wrong), timeout=5)
    assert answer.status_code == 200 and _peers(pushed.gateway) == {a.port, 1}
    repairs = pushed.syncer.repairs
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=15, what="the ghost peer gone")
    assert pushed.syncer.repairs > repairs
    assert pushed.gateway.table()["revision"] == revision


def test_a_push_that_would_skip_a_revision_is_refused_and_the_stream_brings_both(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a, b, _, _ = backends
    revision = store.latest_revision()
    _up(store, a)                 # not pushed (another writer, or a push lost)
    _up(pushed.store, b)          # pushed, but continuing a revision nginx does not have
    eventually(lambda: pushed.pusher.outcomes()["refused"] == 1, timeout=2, what="nginx refusing the gap")
    assert _peers(pushed.gateway) == set()
    pushed.wake_the_stream(revision + 2)
    eventually(lambda: _peers(pushed.gateway) == {a.port, b.port}, timeout=5, what="the stream's changes")


def test_a_commit_bigger_than_the_limit_is_left_to_the_stream_and_pushes_resume_after_it(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a, b, c, d = backends
    revision = store.latest_revision()
    pushed.store.apply_events(events=[_event(EventType.UP, x) for x in (a, b, c)])   # 3 > max_changes=2
    time.sleep(0.3)
    assert pushed.pusher.outcomes()["skipped"] == 1 and _peers(pushed.gateway) == set()
    pushed.wake_the_stream(revision + 3)
    eventually(lambda: _peers(pushed.gateway) == {a.port, b.port, c.port}, timeout=5,
               what="the stream's page")
    _up(pushed.store, d)
    eventually(lambda: d.port in _peers(pushed.gateway), timeout=2, what="the next commit, pushed")
    assert pushed.pusher.outcomes()["applied"] == 1


def test_commits_on_the_loop_and_on_other_threads_arrive_in_revision_order(
        pushed: Pushed, backends: list[Backend]) -> None:  # noqa: F811
    a, b, c, d = backends
    for n in range(8):
        for backend in (a, b, c, d):
            change = _event(EventType.UP if n % 2 == 0 else EventType.DOWN, backend)
            if (n + backend.port) % 2:
                pushed.on_loop(lambda e=change: pushed.store.apply_events(events=[e]))  # type: ignore[misc]
            else:
                pushed.store.apply_events(events=[change])
    eventually(lambda: sum(pushed.pusher.outcomes().values()) == 32, timeout=5, what="every answer")
    assert pushed.pusher.outcomes() == {"applied": 32}, "a push arrived out of order (refused as a gap)"
    assert _peers(pushed.gateway) == set()


def test_a_gateway_that_restarts_costs_a_commit_nothing_and_is_reconnected(
        pushed: Pushed, store: CatalogStore, backends: list[Backend]) -> None:  # noqa: F811
    a, b, _, _ = backends
    _up(pushed.store, a)
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=2, what="the first push")
    master = int(pushed.gateway.paths.pidfile.read_text())
    os.kill(master, signal.SIGKILL)
    eventually(lambda: _answers(pushed.gateway) and int(pushed.gateway.paths.pidfile.read_text()) != master,
               timeout=20, what="nginx restarted by the gateway")
    eventually(lambda: _peers(pushed.gateway) == {a.port}, timeout=10, what="the restarted nginx's seed")
    _up(pushed.store, b)          # the kept-alive connection died with nginx: made again
    eventually(lambda: _peers(pushed.gateway) == {a.port, b.port}, timeout=5, what="the push after it")


def test_a_gateway_that_is_down_costs_a_commit_nothing(store: CatalogStore) -> None:  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()
    exported = {"gateway": f"{closed[0]}:{closed[1]}", "outcome": "dropped"}
    before = REGISTRY.get_sample_value("bizcloud_gateway_feed_pushes_total", exported) or 0.0

    async def commit_with_nobody_listening() -> dict[str, int]:
        pusher = NginxPusher([closed])
        monitors = CatalogStore(store.engine, on_commit=pusher)
        started = time.monotonic()
        for n in range(3):
            monitors.apply_event(event=event(EventType.UP, instance(f"u{n}", service="shop")))
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.2)
        await pusher.aclose()
        return dict(pusher.outcomes())

    assert asyncio.run(commit_with_nobody_listening()) == {"dropped": 3}
    assert REGISTRY.get_sample_value("bizcloud_gateway_feed_pushes_total", exported) == before + 3, \
        "the monitor's /metrics shows each gateway's dropped pushes"


@pytest.mark.parametrize("split", [1, 7, 40, 1000])
def test_pipelined_answers_are_read_however_they_arrive(split: int) -> None:
    wire = b"".join(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (status, len(body), body) for status, body in ((200, b'{"a":1}\n'), (409, b"gap\n"),
                                                                     (200, b"")))
    answers = Answers()
    got = [a for i in range(0, len(wire), split) for a in answers.feed(wire[i:i + split])]
    assert got == [(200, b'{"a":1}\n'), (409, b"gap\n"), (200, b"")]


def test_an_answer_without_a_length_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        Answers().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def test_the_request_is_plain_http_1_1() -> None:
    assert request_bytes("127.0.0.1", 8781, b"{}") == (
        b"POST /bizcloud/upstreams HTTP/1.1\r\nHost: 127.0.0.1:8781\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}")


def test_what_is_pushed_is_what_the_syncer_would_push_for_the_same_revisions(
        store: CatalogStore) -> None:  # noqa: F811
    committed: list[Committed] = []
    monitors = CatalogStore(store.engine, on_commit=committed.append)
    monitors.apply_event(event=event(EventType.UP, instance("u1", service="shop")))
    monitors.apply_events(events=[event(EventType.DOWN, instance("u1", service="shop")),
                                  event(EventType.UP, instance("u2", service="shop", ip="10.0.0.2"))])
    monitors.apply_event(event=event(EventType.UP, instance("u2", service="shop", ip="10.0.0.2")))  # no-op
    assert [b.revision for b in committed] == [1, 3]   # not the no-op
    state = RoutingState.seed(revision=0, instances=[], routes=[], policies=[])
    for batch in committed:
        streamed = [_stream_shape(c) for c in store.changes_since(revision=state.revision, limit=10)]
        streamed = [c for c in streamed if c["revision"] <= batch.revision]
        pushed: list[dict[str, Any]] = [{"revision": c.revision, "type": c.type.value, "uid": str(c.uid),
                                         "service": c.service, "env": c.env, "instance": c.instance}
                                        for c in batch.changes()]
        assert commit_body(pushed) == state.delta_body(state.apply(streamed))
        assert [c["instance"] for c in pushed] == [snapshot_of(i) for _, i in batch.applied]


def _stream_shape(change: Any) -> dict[str, Any]:
    """A change as ``/api/v1/changes`` serves it (what the syncer folds)."""
    result: dict[str, Any] = json.loads(ChangePublic.model_validate(change, from_attributes=True)
                                        .model_dump_json())
    return result


def test_pushes_a_closed_connection_did_not_answer_are_sent_again_on_a_new_one() -> None:
    """nginx may close a kept-alive connection with pushes in flight (a restart, a limit): they are
    written again, in order, on the next connection."""
    received: list[bytes] = []

    async def scenario() -> dict[str, int]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    received.append(await reader.readexactly(length))
                    if len(received) == 3:   # read, never answered: the connection closes on it
                        break
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pusher = NginxPusher([("127.0.0.1", port)])
        link = pusher._links[0]
        for n in range(1, 6):
            link.send(request_bytes("127.0.0.1", port, b'{"n":%d}' % n))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await pusher.aclose()
        server.close()
        return dict(pusher.outcomes())

    outcomes = asyncio.run(scenario())
    bodies = [json.loads(b)["n"] for b in received]
    assert bodies == [1, 2, 3, 3, 4, 5], "the unanswered third push is sent again, before the next ones"
    assert outcomes == {"applied": 5}


def test_a_push_whose_connection_always_closes_is_sent_twice_at_most() -> None:
    """A gateway that reads a push and closes the connection, every time: the push is sent again
    once, then dropped (the stream brings it), with no loop of reconnections."""
    received: list[bytes] = []

    async def scenario() -> dict[str, int]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError):
                received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pusher = NginxPusher([("127.0.0.1", port)])
        pusher._links[0].send(request_bytes("127.0.0.1", port, b"{}"))
        await asyncio.sleep(0.5)
        await pusher.aclose()
        server.close()
        return dict(pusher.outcomes())

    assert asyncio.run(scenario()) == {"dropped": 1}
    assert len(received) == 2


def test_an_unreachable_gateway_is_logged_once_until_it_answers(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()
        pusher = NginxPusher([closed])
        link = pusher._links[0]
        for _ in range(3):
            link.next_attempt = 0.0   # as if a second had passed
            link.send(b"x")
            await asyncio.sleep(0.05)
        await pusher.aclose()

    with caplog.at_level(logging.DEBUG, logger="bizcloud.gateway.direct"):
        asyncio.run(scenario())
    levels = [r.levelno for r in caplog.records if "cannot connect" in r.message]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
