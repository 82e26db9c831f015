"""The dependency graph: services and what they use (MySQL clusters, Redis, firewalled hosts, SOA interfaces).

Built from the config center's live configs (``ConfigStore.latest()``); served by
``GET /api/v1/graph`` and ``bizcloud graph``. Purely computational, no side effects.

Edges point from a user to what it uses: service -> mysql cluster (database, user, privileges,
roles), service -> redis, service -> host (tcp port), service -> interface (consumes), and
redis -> host (where it runs). The provider side of an interface is not in a service's config, so
interface -> service ("provided by") edges appear only when the caller passes ``providers`` (from
the SOA registry, say); without it the graph still shows every consumer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bizcloud.configcenter.schema import Inventory, ServiceConfig

NodeKind = Literal["service", "mysql", "redis", "host", "interface"]
EdgeKind = Literal["mysql", "redis", "tcp", "consumes", "runs-on", "provided-by"]


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    name: str
    detail: dict[str, Any] = field(default_factory=dict, compare=False)
    known: bool = True  # False: named by a config, missing from the inventory (cannot happen once stored)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    detail: dict[str, Any] = field(default_factory=dict)


def node_id(kind: NodeKind, name: str) -> str:
    return f"{kind}:{name}"


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def to_json(self) -> dict[str, Any]:
        return {"nodes": [{"id": n.id, "kind": n.kind, "name": n.name, "known": n.known, "detail": n.detail}
                          for n in self.nodes],
                "edges": [{"source": e.source, "target": e.target, "kind": e.kind, "detail": e.detail}
                          for e in self.edges]}

    def to_dot(self) -> str:
        """Graphviz text; every id and label is quoted and escaped, whatever a name holds."""
        shapes = {"service": "box", "mysql": "cylinder", "redis": "cylinder", "host": "component",
                  "interface": "ellipse"}
        lines = ["digraph bizcloud {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for n in self.nodes:
            label = f"{n.kind}\n{n.name}"
            style = "" if n.known else ', style=dashed, color="red"'
            lines.append(f"  {_quote(n.id)} [label={_quote(label)}, shape={shapes[n.kind]}{style}];")
        for e in self.edges:
            lines.append(f"  {_quote(e.source)} -> {_quote(e.target)} [label={_quote(_edge_label(e))}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def for_service(self, name: str) -> Graph:
        """``name``, everything it uses (and where that runs), and the services that use it.

        Raises KeyError when the graph has no such service.
        """
        start = node_id("service", name)
        if not any(n.id == start for n in self.nodes):
            raise KeyError(name)
        keep = {start}
        taken: set[int] = set()  # indexes of the edges kept
        frontier = [start]
        while frontier:  # down: what it uses, and what those resources run on
            here = frontier.pop()
            for i, e in enumerate(self.edges):
                if e.source == here and e.kind != "provided-by" and i not in taken:
                    taken.add(i)
                    if e.target not in keep:
                        keep.add(e.target)
                        frontier.append(e.target)
        for i, e in enumerate(self.edges):  # up: the interfaces it provides, and their consumers
            if e.kind == "provided-by" and e.target == start:
                taken.add(i)
                keep.add(e.source)
                for j, c in enumerate(self.edges):
                    if c.kind == "consumes" and c.target == e.source:
                        taken.add(j)
                        keep.add(c.source)
        edges = tuple(e for i, e in enumerate(self.edges) if i in taken)
        return Graph(nodes=tuple(n for n in self.nodes if n.id in keep), edges=edges)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _edge_label(e: Edge) -> str:
    d = e.detail
    if e.kind == "mysql":
        return f"{d['user']}@{d['database']} {','.join(d['privileges'])} ({'+'.join(d['roles'])})"
    if e.kind == "tcp":
        return f"tcp {d['port']}"
    if e.kind in ("redis", "runs-on"):
        return f"{e.kind} {d['port']}" if "port" in d else e.kind
    return e.kind


def build(*, services: Mapping[str, ServiceConfig], inventory: Inventory,
          providers: Mapping[str, Iterable[str]] | None = None) -> Graph:
    """The graph of ``services`` over ``inventory``; ``providers``: interface -> the services providing it."""
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []

    def add(kind: NodeKind, name: str, detail: dict[str, Any] | None = None, *, known: bool = True) -> str:
        nid = node_id(kind, name)
        nodes.setdefault(nid, Node(id=nid, kind=kind, name=name, detail=detail or {}, known=known))
        return nid

    for name, cluster in sorted(inventory.mysql.items()):
        add("mysql", name, {"master": f"{cluster.master.host}:{cluster.master.port}",
                            "slaves": [f"{s.host}:{s.port}" for s in cluster.slaves],
                            "environments": sorted(cluster.environments)})
    for name, host in sorted(inventory.hosts.items()):
        add("host", name, {"address": host.address, "ports": list(host.ports), "backend": host.backend,
                           "environments": sorted(host.environments)})
    for name, redis in sorted(inventory.redis.items()):
        rid = add("redis", name, {"port": redis.port, "environments": sorted(redis.environments)})
        edges.append(Edge(rid, add("host", redis.host, known=redis.host in inventory.hosts), "runs-on",
                          {"port": redis.port}))
    for name, config in sorted(services.items()):
        sid = add("service", name, {"type": config.type, "ports": dict(sorted(config.ports.items())),
                                    "environments": sorted(config.resources)})
        deps = config.dependencies
        for mysql in deps.mysql:
            target = add("mysql", mysql.cluster, known=mysql.cluster in inventory.mysql)
            edges.append(Edge(sid, target, "mysql", {"database": mysql.database, "user": mysql.user,
                                                     "privileges": sorted(mysql.privileges),
                                                     "roles": sorted(mysql.roles)}))
        for redis_dep in deps.redis:
            known = redis_dep.instance in inventory.redis
            edges.append(Edge(sid, add("redis", redis_dep.instance, known=known), "redis"))
        for tcp in deps.tcp:
            edges.append(Edge(sid, add("host", tcp.host, known=tcp.host in inventory.hosts), "tcp",
                              {"port": tcp.port}))
        for soa in deps.soa:
            for interface in soa.interfaces:
                edge = Edge(sid, add("interface", interface), "consumes")
                if edge not in edges:
                    edges.append(edge)
    for interface, providing in sorted((providers or {}).items()):
        iid = add("interface", interface)
        for svc in sorted(set(providing)):
            edges.append(Edge(iid, add("service", svc, known=svc in services), "provided-by"))
    return Graph(nodes=tuple(nodes.values()), edges=tuple(edges))
