"""The syncer's routing state: seeding, folding changes in, and the pushes it builds. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from bizcloud.gateway.upstreams import RoutingState, peer_of


def _inst(uid: str, *, group: str = "normal", ip: str = "10.88.0.1", port: int | None = 8080,
          ready: bool = True) -> dict[str, Any]:
    return {"uid": uid, "service": "web", "env": "dev", "group": group, "ip": ip, "ready": ready,
            "ports": {} if port is None else {"http": port}}


def _change(revision: int, kind: str, inst: dict[str, Any]) -> dict[str, Any]:
    return {"revision": revision, "type": kind, "uid": inst["uid"], "service": "web", "env": "dev",
            "group": inst["group"], "instance": inst}


@pytest.mark.parametrize(("inst", "peer"), [
    (_inst("a"), {"uid": "a", "ip": "10.88.0.1", "port": 8080}),
    (_inst("b", port=None), None),          # no http port: an SOA-only instance
    (_inst("c", ready=False), None),
    (_inst("d", ip=""), None),
])
def test_peer_of(inst: dict[str, Any], peer: dict[str, Any] | None) -> None:
    assert peer_of(inst) == peer


def test_changes_fold_into_whole_upstream_deltas() -> None:
    state = RoutingState.seed(revision=3, instances=[_inst("a")], routes=[], policies=[])
    delta = state.apply([_change(4, "UP", _inst("b", group="gray")), _change(5, "DOWN", _inst("a"))])
    body = state.delta(delta)
    assert body == {"revision": 5, "full": False, "upstreams": {"web/dev": {
        "normal": [], "gray": [{"uid": "b", "ip": "10.88.0.1", "port": 8080}]}}}
    moved = state.apply([_change(6, "CHANGED", _inst("b", group="normal"))])  # group changed
    assert state.delta(moved)["upstreams"]["web/dev"]["gray"] == []


def test_config_changes_ask_for_routes_and_carry_policies() -> None:
    state = RoutingState()
    delta = state.apply([{"revision": 1, "type": "ROUTE", "service": "web", "env": "dev", "instance": {}},
                         {"revision": 2, "type": "GRAY", "service": "web", "env": "",
                          "instance": {"ratio": 20, "whitelist": ["z", "a"]}}])
    assert delta.reread_routes and delta.policies and not delta.keys
    assert state.delta(delta)["policies"]["web"] == {"ratio": 20.0, "whitelist": ["a", "z"], "fallback": True,
                                                    "uid_source": "header", "uid_name": "X-User-Id"}
    assert state.full()["full"] is True and state.revision == 2
