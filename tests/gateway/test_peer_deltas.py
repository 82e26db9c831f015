"""Per-peer deltas in a real nginx: what ``state.lua`` makes of puts and drops, and what it refuses.

A bare nginx with our configuration and Lua, seeded with a full state, takes pushes on its admin
port straight from these tests (no syncer): the table it then serves must be exactly the
``RoutingState`` the pushes came from, whatever the order of puts, drops and group moves.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bizcloud.gateway.nginxconf import GatewayConfig, GatewayPaths
from bizcloud.gateway.process import Nginx
from bizcloud.gateway.upstreams import RoutingState

GATEWAY_PORT, ADMIN_PORT = 18784, 18785   # this suite's range: 18700-18799
KEY = "web/dev"


def _inst(uid: str, *, ip: str, group: str = "normal", port: int = 8080) -> dict[str, Any]:
    return {"uid": uid, "service": "web", "env": "dev", "group": group, "ip": ip, "ready": True,
            "ports": {"http": port}}


def _change(revision: int, kind: str, inst: dict[str, Any]) -> dict[str, Any]:
    return {"revision": revision, "type": kind, "uid": inst["uid"], "service": "web", "env": "dev",
            "group": inst["group"], "instance": inst}


class Admin:
    def __init__(self) -> None:
        self.url = f"http://127.0.0.1:{ADMIN_PORT}/bizcloud/upstreams"

    def push(self, body: bytes) -> httpx.Response:
        return httpx.post(self.url, content=body, headers={"Content-Type": "application/json"}, timeout=5)

    def table(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url, timeout=5).json()
        return result

    def peers(self) -> dict[str, dict[str, dict[str, Any]]]:
        """group -> uid -> peer (with ``added``) of ``KEY``, as nginx holds it."""
        upstream = self.table()["upstreams"].get(KEY) or {}
        return {group: {p["uid"]: p for p in upstream.get(group) or []} for group in ("normal", "gray")}


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Admin, RoutingState]]:
    pods = [_inst(f"u{i:03d}", ip=f"10.88.0.{i}") for i in range(1, 41)]
    state = RoutingState.seed(revision=1, instances=pods,
                              routes=[{"host": "*", "path_prefix": "/", "service": "web", "env": "dev"}],
                              policies=[])
    nginx = Nginx(GatewayConfig(host="127.0.0.1", port=GATEWAY_PORT, admin_port=ADMIN_PORT),
                  GatewayPaths(tmp_path / "gateway"))
    nginx.start(state.full())
    try:
        yield Admin(), state
    finally:
        nginx.stop()


def _without_added(peers: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {g: {uid: {k: v for k, v in p.items() if k != "added"} for uid, p in by_uid.items()}
            for g, by_uid in peers.items()}


def _expected(state: RoutingState) -> dict[str, dict[str, dict[str, Any]]]:
    return {g: {p["uid"]: p for p in state.peers(KEY, g)} for g in ("normal", "gray")}


def test_random_pages_of_puts_drops_and_moves_leave_exactly_the_state_they_came_from(
        seeded: tuple[Admin, RoutingState]) -> None:
    admin, state = seeded
    rng = random.Random(7)
    live = {f"u{i:03d}" for i in range(1, 41)}
    revision, born = 1, 100
    for _ in range(60):
        page = []
        for _ in range(rng.randint(1, 6)):
            revision += 1
            roll = rng.random()
            if roll < 0.3 and live:   # a pod goes
                uid = rng.choice(sorted(live))
                page.append(_change(revision, "DOWN", _inst(uid, ip="10.88.0.1")))
                live.discard(uid)
            elif roll < 0.6:          # a pod comes, maybe on an address just freed
                uid, born = f"u{born}", born + 1
                ip = f"10.88.{rng.randint(0, 1)}.{rng.randint(1, 60)}"
                page.append(_change(revision, "UP", _inst(uid, ip=ip, group=rng.choice(["normal", "gray"]))))
                live.add(uid)
            elif live:                # a pod changes group, address or port
                uid = rng.choice(sorted(live))
                page.append(_change(revision, "CHANGED", _inst(uid, ip=f"10.88.2.{rng.randint(1, 60)}",
                                                             group=rng.choice(["normal", "gray"]),
                                                             port=rng.choice([8080, 9090]))))
        answer = admin.push(state.delta_body(state.apply(page)))
        assert answer.status_code == 200, answer.text
    assert admin.table()["revision"] == state.revision
    assert _without_added(admin.peers()) == _expected(state)


def test_a_replayed_delta_changes_nothing_and_an_older_one_is_ignored(
        seeded: tuple[Admin, RoutingState]) -> None:
    admin, state = seeded
    first = state.delta_body(state.apply([_change(2, "UP", _inst("n1", ip="10.88.1.1", group="gray"))]))
    assert admin.push(first).status_code == 200
    second = state.delta_body(state.apply([_change(3, "DOWN", _inst("n1", ip="10.88.1.1"))]))
    assert admin.push(second).status_code == 200
    for body in (second, first):   # the newest again: idempotent; an older one: stale, ignored
        answer = admin.push(body)
        assert answer.status_code == 200, answer.text
        assert "n1" not in admin.peers()["gray"]
    assert "stale" in answer.json()["message"]
    assert _without_added(admin.peers()) == _expected(state)


def test_an_address_keeps_its_routable_time_and_a_new_one_gets_the_push_time(
        seeded: tuple[Admin, RoutingState]) -> None:
    admin, state = seeded
    before = admin.peers()["normal"]["u005"]["added"]
    pushed_at = time.time()
    body = state.delta_body(state.apply([_change(2, "DOWN", _inst("u005", ip="10.88.0.5")),
                                         _change(3, "UP", _inst("r005", ip="10.88.0.5")),     # same address
                                         _change(4, "UP", _inst("fresh", ip="10.88.3.3"))]))
    assert admin.push(body).status_code == 200
    after = admin.peers()["normal"]
    assert "u005" not in after and after["r005"]["added"] == before
    assert after["fresh"]["added"] >= pushed_at - 0.002   # ngx.now() has millisecond precision


@pytest.mark.parametrize(("body", "says"), [
    (b'{"revision": 9, "peers": {"web/dev": {"put": [{"ip": "10.88.9.9", "port": 80, "group": "normal"}]}}}',
     "uid is required"),
    (b'{"revision": 9, "peers": {"web/dev": {"put": [{"uid": "x", "ip": "10.88.9.9", "port": 80, '
     b'"group": "blue"}]}}}', "group must be normal or gray"),
    (b'{"revision": 9, "peers": {"web/dev": {"put": [{"uid": "x", "ip": "10.88.9.300", "port": 80, '
     b'"group": "normal"}]}}}', "is not an IP address"),
    (b'{"revision": 9, "peers": {"web/dev": {"drop": "u001"}}}', "drop is not a list"),
    (b'{"revision": 9, "peers": {"web/dev": {"drop": [1]}}}', "is not a uid"),
    (b'{"revision": 9, "peers": {"web/dev": {"remove": ["u001"]}}}', "unknown field remove"),
    (b'{"revision": 9, "peers": {"web": {"drop": ["u001"]}}}', "is not service/env"),
    (b'{"revision": 9, "full": true, "peers": {"web/dev": {"drop": ["u001"]}}}', "full push carries"),
    # a valid first upstream does not get applied when the second is refused
    (b'{"revision": 9, "peers": {"web/dev": {"drop": ["u001"]}, "web/qa": {"put": [{"uid": "q"}]}}}',
     "peers.web/qa.put[1]"),
])
def test_a_malformed_delta_is_refused_and_changes_nothing(seeded: tuple[Admin, RoutingState], body: bytes,
                                                         says: str) -> None:
    admin, _ = seeded
    before = admin.table()
    answer = admin.push(body)
    assert answer.status_code == 400 and says in answer.json()["message"], answer.text
    after = admin.table()
    assert (after["revision"], after["generation"], after["upstreams"]) == \
        (before["revision"], before["generation"], before["upstreams"])


def test_a_delta_applies_over_any_revision_from_its_base_and_never_over_an_older_one(
        seeded: tuple[Admin, RoutingState]) -> None:
    admin, state = seeded
    ahead = RoutingState.seed(revision=1, instances=[], routes=[], policies=[])   # another writer's copy
    first = state.apply([_change(2, "UP", _inst("n1", ip="10.88.1.1"))])
    second = state.apply([_change(3, "UP", _inst("n2", ip="10.88.1.2"))])
    body_first, body_second = state.delta_body(first), state.delta_body(second)
    assert (first.base, second.base) == (1, 2)
    gap = admin.push(body_second)                       # continues 2; the gateway is at 1
    assert gap.status_code == 409 and "gap" in gap.json()["message"]
    assert admin.table()["revision"] == 1 and "n2" not in admin.peers()["normal"]
    assert admin.push(body_first).status_code == 200
    assert admin.push(body_second).status_code == 200
    # a writer that saw both at once: its delta continues 1, the gateway is at 3 — applied, no change
    both = ahead.apply([_change(2, "UP", _inst("n1", ip="10.88.1.1")),
                        _change(3, "UP", _inst("n2", ip="10.88.1.2"))])
    assert admin.push(ahead.delta_body(both)).status_code == 200
    assert admin.table()["revision"] == 3
    assert _without_added(admin.peers()) == _expected(state)
