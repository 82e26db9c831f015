"""The gateway's routing state in Python: what the syncer holds and pushes to each nginx.

The syncer seeds a ``RoutingState`` from the catalog (instances, routes, gray policies, at one
revision), folds each page of the change stream into it, and pushes to every gateway only the
peers a page touched: per upstream, the peers to put (each whole, with its group: a put
replaces the peer of that uid wherever it was) and the uids to drop. Both are idempotent, so
replaying the newest delta is harmless, and the gateway ignores one older than its revision. A
gateway that starts, restarts or lost track gets ``full()``, every upstream whole.

Why per peer: the gateway validates, decodes and re-encodes what a push names. With one
service of 1,000 pods, a delta carrying its whole upstream (44 KB) took nginx 3.9 ms to apply
on a quiet machine (10 peers: 0.5 ms), three times the rest of the path; under a churning
cluster it was the longest step from Ready to routable. Purely computational; ``syncer.py`` does
the I/O. The JSON shapes here are the ones ``lua/bizcloud/state.lua`` validates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
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


def grouped_peer(instance: Mapping[str, Any]) -> dict[str, Any] | None:
    """``peer_of`` with the instance's group: what a push puts (state.lua's peer shape)."""
    peer = peer_of(instance)
    return None if peer is None else {"group": str(instance.get("group", "normal")), **peer}


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
            if (put := grouped_peer(instance)) is not None:
                state._put(upstream_key(str(instance["service"]), str(instance["env"])), put)
        return state

    def set_routes(self, routes: Iterable[Mapping[str, Any]]) -> None:
        self.routes = [{"host": r["host"], "path_prefix": r["path_prefix"], "service": r["service"],
                        "env": r["env"]} for r in routes]

    def set_policies(self, policies: Iterable[Mapping[str, Any]]) -> None:
        self.policies = {p["service"]: _policy(p) for p in policies}

    def apply(self, changes: Iterable[Mapping[str, Any]]) -> Delta:
        """Fold a page of the change stream in; what to push (continuing the revision the state was
        at). Config changes ask for a re-read."""
        delta = Delta(base=self.revision)
        for change in changes:
            kind = change["type"]
            self.revision = max(self.revision, int(change["revision"]))
            if kind == "GRAY":
                self.policies[change["service"]] = _policy(change["instance"])
                delta.policies = True
            elif kind == "ROUTE":
                delta.reread_routes = True
            elif kind in INSTANCE_TYPES:
                key, uid, put = delta.fold(change)
                self._remove(key, uid)   # a DOWN, or an UP or CHANGED whose group may have changed
                if put is not None:
                    self._put(key, put)
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
        """The push for what ``delta`` touched, as sent: per upstream the peers put (with their
        group) and the uids dropped, in uid order; routes and policies whole when touched."""
        return delta.body(self.revision, routes=self.routes if delta.reread_routes else None,
                          policies=self.policies if delta.policies else None)

    def peers(self, key: str, group: str) -> list[dict[str, Any]]:
        return list(self.upstreams.get(key, {}).get(group, {}).values())

    def differences(self, table: Mapping[str, Any]) -> list[str]:
        """The upstreams whose peers differ in a gateway's table (its ``GET`` answer's
        ``upstreams``: key -> group -> peers, each with the ``added`` time nginx stamps) from
        this state's, compared by uid, address and port. Empty groups and missing ones are alike."""
        def addresses(peers: Any) -> set[tuple[str, str, int]]:
            if not isinstance(peers, list):   # nginx's JSON writes an empty list as {}
                return set()
            return {(str(p.get("uid")), str(p.get("ip")), int(p.get("port") or 0)) for p in peers}

        differ = []
        for key in sorted(set(self.upstreams) | set(table)):
            held = table.get(key) or {}
            if not isinstance(held, dict) or any(
                    addresses(held.get(group)) != addresses(self.peers(key, group)) for group in GROUPS):
                differ.append(key)
        return differ

    def _groups(self, key: str) -> dict[str, list[dict[str, Any]]]:
        return {group: sorted(self.upstreams.get(key, {}).get(group, {}).values(), key=lambda p: p["uid"])
                for group in GROUPS}

    def _put(self, key: str, put: Mapping[str, Any]) -> None:
        """``put`` (a ``grouped_peer``) into its group of upstream ``key``."""
        peer = {k: v for k, v in put.items() if k != "group"}
        groups = self.upstreams.setdefault(key, {g: {} for g in GROUPS})
        groups.setdefault(put["group"], {})[peer["uid"]] = peer

    def _remove(self, key: str, uid: str) -> None:
        for peers in self.upstreams.get(key, {}).values():
            peers.pop(uid, None)


@dataclass
class Delta:
    """What one page of changes touched."""

    # upstream key -> uid -> the peer put (with its group), or None: dropped. The last change wins.
    peers: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)
    policies: bool = False
    reread_routes: bool = False
    # The revision the changes continue: a gateway behind it would skip some, and refuses the push.
    base: int | None = None

    @property
    def keys(self) -> set[str]:
        """The upstreams touched."""
        return set(self.peers)

    def __bool__(self) -> bool:
        return bool(self.peers) or self.policies or self.reread_routes

    def fold(self, change: Mapping[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
        """Take one instance change in (it carries the instance's whole new state, so no other state
        is needed); its upstream, its uid and the peer it puts (None: the uid is dropped)."""
        key, uid = upstream_key(change["service"], change["env"]), str(change["uid"])
        put = None if change["type"] == "DOWN" else grouped_peer(change["instance"])
        self.peers.setdefault(key, {})[uid] = put
        return key, uid, put

    def body(self, revision: int, *, routes: list[dict[str, Any]] | None = None,
             policies: dict[str, dict[str, Any]] | None = None) -> bytes:
        """The push, as sent, making a gateway at ``base`` current at ``revision``."""
        peers = b",".join(_dumps(key) + b":" + _peer_ops(self.peers[key]) for key in sorted(self.peers))
        extra = b"" if self.base is None else b',"base":%d' % self.base
        if routes is not None:
            extra += b',"routes":' + _dumps(routes)
        if policies is not None:
            extra += b',"policies":' + _dumps(policies)
        return b'{"revision":%d,"full":false,"peers":{%s}%s}' % (revision, peers, extra)


def commit_body(changes: Sequence[Mapping[str, Any]]) -> bytes | None:
    """The push for one commit of instance changes (consecutive revisions, in the change stream's
    shape), continuing the revision before its first; None when there are none. What the monitor
    sends each gateway after each commit (``direct.py``). Purely computational."""
    if not changes:
        return None
    delta = Delta(base=int(changes[0]["revision"]) - 1)
    for change in changes:
        if change["type"] not in INSTANCE_TYPES:
            return None   # a config change: routes and policies come from the syncer alone
        delta.fold(change)
    return delta.body(int(changes[-1]["revision"]))


def _peer_ops(peers: Mapping[str, dict[str, Any] | None]) -> bytes:
    """One upstream's part of a delta: ``{"put": [peers with groups], "drop": [uids]}``."""
    put = [peers[uid] for uid in sorted(peers) if peers[uid] is not None]
    drop = [uid for uid in sorted(peers) if peers[uid] is None]
    return _dumps({"put": put, "drop": drop})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _policy(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"ratio": float(p.get("ratio", 0.0)), "whitelist": sorted(map(str, p.get("whitelist", ()))),
            "fallback": bool(p.get("fallback", True)), "uid_source": str(p.get("uid_source", "header")),
            "uid_name": str(p.get("uid_name", "X-User-Id"))}
