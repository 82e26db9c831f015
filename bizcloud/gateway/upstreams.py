"""The gateway's routing state in Python: what the syncer holds and pushes to each nginx.

The syncer seeds a ``RoutingState`` from the catalog (instances, routes, gray policies, at one
revision), folds each page of the change stream into it, and pushes to every gateway only the
upstreams a page touched (each whole: a delta replaces the groups of the upstreams it names, so
replaying one is harmless). A gateway that starts, restarts or lost track gets ``full()``. Purely
computational; ``syncer.py`` does the I/O. The JSON shapes here are the ones ``lua/bizcloud/state.lua``
validates.
"""

from __future__ import annotations

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
        """The push for what ``delta`` touched (upstreams whole; routes and policies whole when touched)."""
        body: dict[str, Any] = {"revision": self.revision, "full": False,
                                "upstreams": {key: self._groups(key) for key in sorted(delta.keys)}}
        if delta.reread_routes:
            body["routes"] = self.routes
        if delta.policies:
            body["policies"] = self.policies
        return body

    def peers(self, key: str, group: str) -> list[dict[str, Any]]:
        return list(self.upstreams.get(key, {}).get(group, {}).values())

    def _groups(self, key: str) -> dict[str, list[dict[str, Any]]]:
        return {group: sorted(self.upstreams.get(key, {}).get(group, {}).values(), key=lambda p: p["uid"])
                for group in GROUPS}

    def _put(self, instance: Mapping[str, Any]) -> None:
        peer = peer_of(instance)
        if peer is None:
            return
        key = upstream_key(str(instance["service"]), str(instance["env"]))
        group = str(instance.get("group", "normal"))
        self.upstreams.setdefault(key, {g: {} for g in GROUPS}).setdefault(group, {})[peer["uid"]] = peer

    def _remove(self, key: str, uid: str) -> None:
        for peers in self.upstreams.get(key, {}).values():
            peers.pop(uid, None)


@dataclass
class Delta:
    """What one page of changes touched."""

    keys: set[str] = field(default_factory=set)
    policies: bool = False
    reread_routes: bool = False

    def __bool__(self) -> bool:
        return bool(self.keys) or self.policies or self.reread_routes


def _policy(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"ratio": float(p.get("ratio", 0.0)), "whitelist": sorted(map(str, p.get("whitelist", ()))),
            "fallback": bool(p.get("fallback", True)), "uid_source": str(p.get("uid_source", "header")),
            "uid_name": str(p.get("uid_name", "X-User-Id"))}
