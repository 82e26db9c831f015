"""The syncer's routing state: seeding, folding changes in, and the pushes it builds. Pure."""

from __future__ import annotations

import json
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


def test_a_delta_is_sent_as_the_same_json_the_full_state_holds() -> None:
    """The wire bytes, built from each peer's JSON kept since it was put, are exactly the compact
    JSON of the upstreams as the full state holds them, through puts, moves, changes and removals."""
    pods = [_inst(f"u{i:02d}", ip=f"10.88.0.{i}") for i in range(1, 30)]
    state = RoutingState.seed(revision=1, instances=pods,
                              routes=[{"host": "*", "path_prefix": "/", "service": "web", "env": "dev"}],
                              policies=[{"service": "web", "ratio": 20}])
    delta = state.apply([
        _change(2, "UP", _inst("u99", group="gray", ip="10.88.1.9")),
        _change(3, "DOWN", _inst("u05")),
        _change(4, "CHANGED", _inst("u07", group="gray", ip="10.88.0.7")),   # moved to gray
        _change(5, "CHANGED", _inst("u08", ip="10.88.2.8", port=9090)),      # new address
        _change(6, "CHANGED", _inst("u09", port=None)),                        # no longer serves http
        {"revision": 7, "type": "GRAY", "service": "web", "env": "", "instance": {"ratio": 5}},
    ])
    expected = {"revision": 7, "full": False, "upstreams": {"web/dev": state.full()["upstreams"]["web/dev"]},
                "policies": state.full()["policies"]}
    assert state.delta_body(delta) == json.dumps(expected, separators=(",", ":")).encode()
    gray = [p["uid"] for p in expected["upstreams"]["web/dev"]["gray"]]
    normal = {p["uid"]: p for p in expected["upstreams"]["web/dev"]["normal"]}
    assert gray == ["u07", "u99"] and "u05" not in normal and "u09" not in normal
    assert normal["u08"] == {"uid": "u08", "ip": "10.88.2.8", "port": 9090}
