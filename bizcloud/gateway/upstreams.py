"""The gateway's routing state in Python: what the syncer holds and pushes to each nginx.

The syncer seeds a ``RoutingState`` from the catalog (instances, routes, gray policies, at one
revision), folds each page of the change stream into it, and pushes to every gateway only the
upstreams a page touched (each whole: a delta replaces the groups of the upstreams it names, so
replaying one is harmless). A gateway that starts, restarts or lost track gets ``full()``.

A delta goes out as ``delta_body``'s bytes, built from each peer's JSON kept since it was put: at
1,000 peers in one upstream, encoding the whole upstream again on each delta (json.dumps of 1,000
dicts) was most of the syncer's time per push, on the Ready -> routable path. Purely
computational; ``syncer.py`` does the I/O. The JSON shapes here are the ones ``lua/bizcloud/state.lua``
validates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HTTP_PORT = "http"
GROUPS = ("normal", "gray")
INSTANCE_TYPES = frozenset({"UP", "CHANGED", "DOWN"})


def upstream_key(service: str, env: str) -> str:
    """The name of one upstream: a service in an environment (``demo-web/dev``)."""
    return f"{service}/{env}"


def peer_of(instance: Mapping[str, Any]) -> dict[str, Any] | None:
    """The peer an instance (catalog JSON) offers the access layer; None when it serves no HTTP."""
    port = (instance.get("ports") or {}).get(HTTP_PORT)
    if not instance.get("ready", True) or not instance.get("ip") or not isinstance(port, int):
        return None
    return {"uid": str(instance["uid"]), "ip": str(instance["ip"]), "port": port}


@dataclass
class RoutingState:
    """Everything every gateway should hold, current at ``revision``."""

    revision: int = 0
    routes: list[dict[str, Any]] = field(default_factory=list)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # key -> group -> uid -> peer
    upstreams: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # (key, uid) -> that peer's JSON, as the push carries it
    _encoded: dict[tuple[str, str], bytes] = field(default_factory=dict, init=False, repr=False,
                                                   compare=False)

    @classmethod
    def seed(cls, *, revision: int, instances: Iterable[Mapping[str, Any]],
             routes: Iterable[Mapping[str, Any]], policies: Iterable[Mapping[str, Any]]) -> RoutingState:
        state = cls(revision=revision)
        state.set_routes(routes)
        state.set_policies(policies)
        for instance in instances:
            state._put(instance)
        return state

    def set_routes(self, routes: Iterable[Mapping[str, Any]]) -> None:
        self.routes = [{"host": r["host"], "path_prefix": r["path_prefix"], "service": r["service"],
                        "env": r["env"]} for r in routes]

    def set_policies(self, policies: Iterable[Mapping[str, Any]]) -> None:
        self.policies = {p["service"]: _policy(p) for p in policies}

    def apply(self, changes: Iterable[Mapping[str, Any]]) -> Delta:
        """Fold a page of the change stream in; what to push. Config changes ask for a re-read."""
        delta = Delta()
        for change in changes:
            kind = change["type"]
            self.revision = max(self.revision, int(change["revision"]))
            if kind == "GRAY":
                self.policies[change["service"]] = _policy(change["instance"])
                delta.policies = True
            elif kind == "ROUTE":
                delta.reread_routes = True
            elif kind in INSTANCE_TYPES:
                instance = change["instance"]
                key = upstream_key(change["service"], change["env"])
                if kind == "DOWN":
                    self._remove(key, str(change["uid"]))
                else:
                    self._remove(key, str(change["uid"]))  # the group may have changed
                    self._put(instance)
                delta.keys.add(key)
        return delta

    def full(self) -> dict[str, Any]:
        """The push that makes a gateway hold exactly this state."""
        return {"revision": self.revision, "full": True, "routes": self.routes, "policies": self.policies,
                "upstreams": {key: self._groups(key) for key in sorted(self.upstreams)}}

    def delta(self, delta: Delta) -> dict[str, Any]:
        """The push for what ``delta`` touched, decoded (what ``delta_body`` sends)."""
        body: dict[str, Any] = json.loads(self.delta_body(delta))
        return body

    def delta_body(self, delta: Delta) -> bytes:
        """The push for what ``delta`` touched, as sent: upstreams whole, and routes and policies
        whole when touched; peers in uid order."""
        upstreams = b",".join(_dumps(key) + b":" + self._groups_body(key) for key in sorted(delta.keys))
        extra = b""
        if delta.reread_routes:
            extra += b',"routes":' + _dumps(self.routes)
        if delta.policies:
            extra += b',"policies":' + _dumps(self.policies)
        return b'{"revision":%d,"full":false,"upstreams":{%s}%s}' % (self.revision, upstreams, extra)

    def peers(self, key: str, group: str) -> list[dict[str, Any]]:
        return list(self.upstreams.get(key, {}).get(group, {}).values())

    def _groups(self, key: str) -> dict[str, list[dict[str, Any]]]:
        return {group: sorted(self.upstreams.get(key, {}).get(group, {}).values(), key=lambda p: p["uid"])
                for group in GROUPS}

    def _groups_body(self, key: str) -> bytes:
        groups, encoded = self.upstreams.get(key, {}), self._encoded
        lists = (b",".join(encoded[key, uid] for uid in sorted(groups.get(group, ()))) for group in GROUPS)
        return b"{" + b",".join(b'"%s":[%s]' % (g.encode(), peers) for g, peers in zip(GROUPS, lists,
                                                                                         strict=True)) + b"}"

    def _put(self, instance: Mapping[str, Any]) -> None:
        peer = peer_of(instance)
        if peer is None:
            return
        key = upstream_key(str(instance["service"]), str(instance["env"]))
        group = str(instance.get("group", "normal"))
        self.upstreams.setdefault(key, {g: {} for g in GROUPS}).setdefault(group, {})[peer["uid"]] = peer
        self._encoded[key, peer["uid"]] = _dumps(peer)

    def _remove(self, key: str, uid: str) -> None:
        for peers in self.upstreams.get(key, {}).values():
            peers.pop(uid, None)
        self._encoded.pop((key, uid), None)


@dataclass
class Delta:
    """What one page of changes touched."""

    keys: set[str] = field(default_factory=set)
    policies: bool = False
    reread_routes: bool = False

    def __bool__(self) -> bool:
        return bool(self.keys) or self.policies or self.reread_routes


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _policy(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"ratio": float(p.get("ratio", 0.0)), "whitelist": sorted(map(str, p.get("whitelist", ()))),
            "fallback": bool(p.get("fallback", True)), "uid_source": str(p.get("uid_source", "header")),
            "uid_name": str(p.get("uid_name", "X-User-Id"))}
