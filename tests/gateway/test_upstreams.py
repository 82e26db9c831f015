"""The syncer's routing state: seeding, folding changes in, and the pushes it builds. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bizcloud.gateway.upstreams import RoutingState, commit_body, peer_of


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


def test_changes_fold_into_per_peer_deltas() -> None:
    state = RoutingState.seed(revision=3, instances=[_inst("a")], routes=[], policies=[])
    delta = state.apply([_change(4, "UP", _inst("b", group="gray")), _change(5, "DOWN", _inst("a"))])
    assert state.delta(delta) == {"revision": 5, "base": 3, "full": False, "peers": {"web/dev": {
        "put": [{"group": "gray", "uid": "b", "ip": "10.88.0.1", "port": 8080}], "drop": ["a"]}}}
    moved = state.apply([_change(6, "CHANGED", _inst("b", group="normal"))])  # group changed
    assert state.delta(moved)["peers"]["web/dev"] == {
        "put": [{"group": "normal", "uid": "b", "ip": "10.88.0.1", "port": 8080}], "drop": []}
    assert state.peers("web/dev", "gray") == []
    assert [p["uid"] for p in state.peers("web/dev", "normal")] == ["b"]


def test_the_last_change_of_a_peer_in_a_page_wins() -> None:
    state = RoutingState.seed(revision=1, instances=[], routes=[], policies=[])
    delta = state.apply([_change(2, "UP", _inst("a")), _change(3, "DOWN", _inst("a")),
                         _change(4, "UP", _inst("b")), _change(5, "CHANGED", _inst("b", ip="10.88.0.2")),
                         _change(6, "CHANGED", _inst("c", port=None))])   # serves no http: dropped
    assert state.delta(delta)["peers"]["web/dev"] == {
        "put": [{"group": "normal", "uid": "b", "ip": "10.88.0.2", "port": 8080}], "drop": ["a", "c"]}
    assert delta.keys == {"web/dev"} and bool(delta)


def test_config_changes_ask_for_routes_and_carry_policies() -> None:
    state = RoutingState()
    delta = state.apply([{"revision": 1, "type": "ROUTE", "service": "web", "env": "dev", "instance": {}},
                         {"revision": 2, "type": "GRAY", "service": "web", "env": "",
                          "instance": {"ratio": 20, "whitelist": ["z", "a"]}}])
    assert delta.reread_routes and delta.policies and not delta.keys
    assert state.delta(delta)["policies"]["web"] == {"ratio": 20.0, "whitelist": ["a", "z"], "fallback": True,
                                                    "uid_source": "header", "uid_name": "X-User-Id"}
    assert state.full()["full"] is True and state.revision == 2


def test_a_delta_applied_to_the_previous_full_state_gives_the_new_full_state() -> None:
    """What the gateway does with a delta (``patch``, below, as ``state.lua`` does it) turns the
    state it held into exactly the new full state, through puts, moves, changes and removals."""
    pods = [_inst(f"u{i:02d}", ip=f"10.88.0.{i}") for i in range(1, 30)]
    state = RoutingState.seed(revision=1, instances=pods,
                              routes=[{"host": "*", "path_prefix": "/", "service": "web", "env": "dev"}],
                              policies=[{"service": "web", "ratio": 20}])
    held = state.full()["upstreams"]
    delta = state.apply([
        _change(2, "UP", _inst("u99", group="gray", ip="10.88.1.9")),
        _change(3, "DOWN", _inst("u05")),
        _change(4, "CHANGED", _inst("u07", group="gray", ip="10.88.0.7")),   # moved to gray
        _change(5, "CHANGED", _inst("u08", ip="10.88.2.8", port=9090)),      # new address
        _change(6, "CHANGED", _inst("u09", port=None)),                        # no longer serves http
        {"revision": 7, "type": "GRAY", "service": "web", "env": "", "instance": {"ratio": 5}},
    ])
    body = json.loads(state.delta_body(delta))
    assert body["revision"] == 7 and body["policies"] == state.full()["policies"] and "upstreams" not in body
    for key, ops in body["peers"].items():
        held[key] = patch(held.get(key, {"normal": [], "gray": []}), ops)
    assert held == state.full()["upstreams"]
    assert [p["uid"] for p in held["web/dev"]["gray"]] == ["u07", "u99"]


def test_a_commit_is_pushed_as_the_stream_would_fold_it() -> None:
    """The monitor's push for one commit (``commit_body``) is the syncer's delta for the same
    changes, continuing the revision before the commit; a config change is never in one."""
    state = RoutingState.seed(revision=3, instances=[_inst("a")], routes=[], policies=[])
    changes = [_change(4, "UP", _inst("b", group="gray")), _change(5, "DOWN", _inst("a")),
               _change(6, "CHANGED", _inst("c", port=None))]
    assert json.loads(commit_body(changes) or b"") == state.delta(state.apply(changes))
    assert commit_body([]) is None
    route = {"revision": 7, "type": "ROUTE", "service": "web", "env": "dev", "instance": {}}
    assert commit_body([route]) is None


def patch(upstream: dict[str, list[dict[str, Any]]], ops: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``state.lua``'s ``patch_upstream`` in Python (peers kept in uid order, as ``full`` has them)."""
    gone = set(ops["drop"]) | {p["uid"] for p in ops["put"]}
    out = {group: [p for p in upstream[group] if p["uid"] not in gone] for group in ("normal", "gray")}
    for peer in ops["put"]:
        out[peer["group"]].append({k: v for k, v in peer.items() if k != "group"})
    return {group: sorted(peers, key=lambda p: p["uid"]) for group, peers in out.items()}


def test_differences_name_the_upstreams_a_gateway_holds_otherwise() -> None:
    """A gateway's table (peers with nginx's ``added`` stamps, an empty group written as ``{}``)
    against the state: only a different set of uid, address and port counts."""
    state = RoutingState.seed(revision=3, instances=[_inst("a"), _inst("b", group="gray")], routes=[],
                              policies=[])
    same = {"web/dev": {"normal": [{"uid": "a", "ip": "10.88.0.1", "port": 8080, "added": 1.5}],
                        "gray": [{"uid": "b", "ip": "10.88.0.1", "port": 8080, "added": 2.5}]},
            "gone/dev": {"normal": {}, "gray": {}}}
    assert state.differences(same) == []
    wrong_port = json.loads(json.dumps(same))
    wrong_port["web/dev"]["normal"][0]["port"] = 1
    assert state.differences(wrong_port) == ["web/dev"]
    extra = json.loads(json.dumps(same))
    extra["shop/dev"] = {"normal": [{"uid": "x", "ip": "10.88.0.9", "port": 80}], "gray": {}}
    assert state.differences(extra) == ["shop/dev"]
    assert state.differences({}) == ["web/dev"], "an upstream the gateway lacks"
