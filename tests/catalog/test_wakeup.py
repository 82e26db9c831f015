"""The change stream's wake-up: a commit in "the monitor" answers a long-poll at once, over real UDP.

A real uvicorn server on a migrated SQLite file, the monitor's ``CatalogSubscriber`` on its own
engine (another process, as far as the server can tell) and real datagrams on loopback. The
server's poll interval is set far above what the wake-up must achieve, so an answer in time can
only come from the datagram; with the datagram lost the same long-poll still answers, by polling.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.catalog.subscriber import CatalogSubscriber
from bizcloud.catalog.wakeup import Address, WakeupSender, decode, encode, parse_targets
from bizcloud.errors import BizCloudError
from bizcloud.monitor.model import EventType
from bizcloud.web.app import create_app
from tests.catalog.conftest import event, instance
from tests.catalog.test_api import serving

SLOW_POLL_S = 5.0   # the server's fallback in the push tests: an answer well before it is the push's


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Running:
    base_url: str
    wakeup: Address


@contextmanager
def api_server(db_url: str, *, poll_s: float, listen: bool) -> Iterator[Running]:
    """``bizcloud server``'s app on a free port, listening for wake-ups on a free UDP port (or not)."""
    wakeup = ("127.0.0.1", free_udp_port())
    app = create_app(database_url=db_url, poll_interval=poll_s, wakeup=wakeup if listen else None)
    with serving(app) as url:
        yield Running(base_url=url, wakeup=wakeup)


@asynccontextmanager
async def monitor_side(db_url: str, targets: list[Address]) -> AsyncIterator[CatalogSubscriber]:
    """The monitor's catalog subscriber on its own engine, announcing commits to ``targets``."""
    engine = make_engine(db_url)
    sender = WakeupSender(targets)
    try:
        yield CatalogSubscriber(CatalogStore(engine, on_commit=lambda done: sender.notify(done.revision)))
    finally:
        sender.close()
        engine.dispose()


async def long_poll(client: httpx.AsyncClient, *, since: int, wait: float) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = await client.get("/api/v1/changes", params={"since": since, "wait": wait})
    response.raise_for_status()
    return time.perf_counter() - started, response.json()


async def until_waiting() -> None:
    """Give the long-poll time to reach the server and start waiting (it then reads once)."""
    await asyncio.sleep(0.3)


# --- the datagram and the targets (pure) ----------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param(None, [("127.0.0.1", 8700)], id="unset: the server's own address"),
    pytest.param("  ", [("127.0.0.1", 8700)], id="blank: the same"),
    pytest.param("off", [], id="off"),
    pytest.param("api-1:8700, api-2:9700", [("api-1", 8700), ("api-2", 9700)], id="several hosts"),
    pytest.param("[::1]:8700", [("::1", 8700)], id="IPv6 in brackets"),
])
def test_targets(spec: str | None, expected: list[Address]) -> None:
    assert parse_targets(spec, default=("127.0.0.1", 8700)) == expected


@pytest.mark.parametrize("spec", ["api-1", "api-1:http", ":8700", "api-1:0", "api-1:70000", "a:1,,b:2"])
def test_bad_targets_name_the_entry_and_the_setting(spec: str) -> None:
    with pytest.raises(BizCloudError) as caught:
        parse_targets(spec, default=("127.0.0.1", 8700))
    assert "catalog_wakeup" in caught.value.message and "BIZCLOUD_CATALOG_WAKEUP" in caught.value.hint


@pytest.mark.parametrize(("datagram", "revision"), [
    pytest.param(encode(42), 42, id="ours"),
    pytest.param(b"bizcloud-catalog -1", None, id="negative"),
    pytest.param(b"bizcloud-catalog ", None, id="no revision"),
    pytest.param(b"GET / HTTP/1.1\r\n", None, id="someone else's"),
    pytest.param(b"bizcloud-catalog " + b"9" * 100, None, id="too long"),
])
def test_datagram(datagram: bytes, revision: int | None) -> None:
    assert decode(datagram) == revision


# --- against the real server ----------------------------------------------------------------------

async def test_a_commit_wakes_a_long_poll_long_before_the_poll_would(db_url: str) -> None:
    with api_server(db_url, poll_s=SLOW_POLL_S, listen=True) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client, \
                monitor_side(db_url, [server.wakeup]) as catalog:
            for i in range(3):   # each round: a fresh wait, one commit, an answer within ms
                since = (await client.get("/api/v1/instances")).json()["revision"]
                waiting = asyncio.create_task(long_poll(client, since=since, wait=20))
                await until_waiting()
                committed = time.perf_counter()
                await catalog.handle(event(EventType.UP, instance(f"uid-{i}", ip=f"10.88.0.{i + 5}")))
                _, page = await waiting
                answered_after = time.perf_counter() - committed
                assert [c["uid"] for c in page["changes"]] == [f"uid-{i}"]
                assert answered_after < 1.0 < SLOW_POLL_S, (
                    f"round {i}: answered {answered_after:.3f} s after the commit: the wake-up was not used")


async def test_a_batch_commit_announces_its_newest_revision(db_url: str) -> None:
    with api_server(db_url, poll_s=SLOW_POLL_S, listen=True) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client, \
                monitor_side(db_url, [server.wakeup]) as catalog:
            waiting = asyncio.create_task(long_poll(client, since=0, wait=20))
            await until_waiting()
            committed = time.perf_counter()
            await catalog.handle_batch([event(EventType.UP, instance(f"b{i}", ip=f"10.88.1.{i + 1}"))
                                        for i in range(5)])
            _, page = await waiting
            assert time.perf_counter() - committed < 1.0
            assert len(page["changes"]) == 5


async def test_a_forged_or_stray_datagram_wakes_no_one_early(db_url: str) -> None:
    with api_server(db_url, poll_s=0.2, listen=True) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            waiting = asyncio.create_task(long_poll(client, since=0, wait=1.5))
            await until_waiting()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for datagram in (encode(10**9), b"garbage", encode(1)):
                    s.sendto(datagram, server.wakeup)
            elapsed, page = await waiting
            assert page["changes"] == [] and elapsed >= 1.4, "the database, not the datagram, decides"


async def test_with_the_wakeup_lost_the_poll_still_delivers(db_url: str) -> None:
    """The server does not listen, the monitor sends to a closed port and to a name that does not
    resolve: every commit still succeeds, and the long-poll answers at the poll interval."""
    with api_server(db_url, poll_s=0.3, listen=False) as server:
        targets = [server.wakeup, ("127.0.0.1", free_udp_port()), ("no-such-host.invalid", 8700)]
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client, \
                monitor_side(db_url, targets) as catalog:
            for i in range(3):
                waiting = asyncio.create_task(long_poll(client, since=i, wait=20))
                await until_waiting()
                await catalog.handle(event(EventType.UP, instance(f"uid-{i}", ip=f"10.88.0.{i + 5}")))
                assert catalog.last_revision == i + 1, "the commit does not depend on the wake-up"
                elapsed, page = await waiting
                assert [c["uid"] for c in page["changes"]] == [f"uid-{i}"]
                assert elapsed < 3.0
