"""The dependency graph (pure): nodes and edges from configs, one service's subgraph, JSON and Graphviz."""

from __future__ import annotations

import pytest

from bizcloud.configcenter import documents, graph
from bizcloud.configcenter.schema import Inventory, ServiceConfig
from tests.configcenter.conftest import DEMO_API, DEMO_WEB, INVENTORY


def configs(*texts: str) -> tuple[dict[str, ServiceConfig], Inventory]:
    services, inventory = {}, Inventory()
    for doc in documents.read("---\n".join(texts)):
        if isinstance(doc.config, Inventory):
            inventory = doc.config
        else:
            services[doc.name] = doc.config
    return services, inventory


@pytest.fixture
def demo() -> graph.Graph:
    services, inventory = configs(INVENTORY, DEMO_API, DEMO_WEB)
    return graph.build(services=services, inventory=inventory,
                       providers={"io.bizcloud.demo.DemoApi": ["demo-api"]})


def edges(g: graph.Graph) -> set[tuple[str, str, str]]:
    return {(e.source, e.kind, e.target) for e in g.edges}


def test_nodes_and_edges_follow_the_configs(demo: graph.Graph) -> None:
    assert {n.id for n in demo.nodes} == {
        "service:demo-api", "service:demo-web", "mysql:local", "redis:cache", "host:cache-host",
        "interface:io.bizcloud.demo.DemoApi"}
    assert edges(demo) == {
        ("service:demo-api", "mysql", "mysql:local"),
        ("service:demo-web", "consumes", "interface:io.bizcloud.demo.DemoApi"),
        ("service:demo-web", "redis", "redis:cache"),
        ("service:demo-web", "tcp", "host:cache-host"),
        ("redis:cache", "runs-on", "host:cache-host"),
        ("interface:io.bizcloud.demo.DemoApi", "provided-by", "service:demo-api"),
    }
    [mysql] = [e for e in demo.edges if e.kind == "mysql"]
    assert mysql.detail == {"database": "demo", "user": "demo_api", "privileges": ["INSERT", "SELECT"],
                            "roles": ["master", "slaves"]}
    [cluster] = [n for n in demo.nodes if n.id == "mysql:local"]
    assert cluster.detail["master"] == "10.0.0.1:3316" and cluster.detail["slaves"] == ["10.0.0.1:3317"]
    assert "admin" not in cluster.detail  # where the credentials are is not the graph's business


def test_without_providers_only_consumers_are_known() -> None:
    services, inventory = configs(INVENTORY, DEMO_API, DEMO_WEB)
    g = graph.build(services=services, inventory=inventory)
    assert not any(e.kind == "provided-by" for e in g.edges)
    assert ("service:demo-web", "consumes", "interface:io.bizcloud.demo.DemoApi") in edges(g)


def test_one_service_with_what_it_uses_and_who_uses_it(demo: graph.Graph) -> None:
    api = demo.for_service("demo-api")
    assert {n.id for n in api.nodes} == {"service:demo-api", "mysql:local", "service:demo-web",
                                         "interface:io.bizcloud.demo.DemoApi"}
    assert edges(api) == {("service:demo-api", "mysql", "mysql:local"),
                          ("interface:io.bizcloud.demo.DemoApi", "provided-by", "service:demo-api"),
                          ("service:demo-web", "consumes", "interface:io.bizcloud.demo.DemoApi")}
    web = demo.for_service("demo-web")
    assert "host:cache-host" in {n.id for n in web.nodes}  # through redis and tcp
    assert "service:demo-api" not in {n.id for n in web.nodes}  # it uses the interface, not its provider
    with pytest.raises(KeyError):
        demo.for_service("nobody")


def test_two_users_on_one_cluster_are_two_edges() -> None:
    second = DEMO_API.replace("name: demo-api", "name: demo-b").replace("user: demo_api", "user: demo_b")
    services, inventory = configs(INVENTORY, DEMO_API, second)
    g = graph.build(services=services, inventory=inventory)
    assert len(g.for_service("demo-b").edges) == 1
    assert [e.detail["user"] for e in g.edges if e.target == "mysql:local"] == ["demo_api", "demo_b"]


def test_json_and_dot(demo: graph.Graph) -> None:
    data = demo.to_json()
    assert {"id": "service:demo-api", "kind": "service", "name": "demo-api", "known": True,
            "detail": {"type": "stateless", "ports": {"soa": 20880}, "environments": []}} in data["nodes"]
    dot = demo.to_dot()
    assert dot.startswith("digraph bizcloud {") and dot.endswith("}\n")
    assert '"service:demo-api" -> "mysql:local" [label="demo_api@demo INSERT,SELECT (master+slaves)"];' in dot
    node = ('"interface:io.bizcloud.demo.DemoApi" '
            '[label="interface\\nio.bizcloud.demo.DemoApi", shape=ellipse];')
    assert node in dot


def test_dot_labels_are_escaped() -> None:
    g = graph.Graph(nodes=(graph.Node(id='x"y', kind="host", name='a"b\\c\nd', known=False),), edges=())
    expected = '"x\\"y" [label="host\\na\\"b\\\\c\\nd", shape=component, style=dashed, color="red"];'
    assert expected in g.to_dot()
