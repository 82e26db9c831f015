"""The planner, table-driven: configs x inventory x instances -> every target's desired grants and scope."""

from __future__ import annotations

from typing import Any

import pytest

from bizcloud.authz.grants import Grant, Kind, MysqlAccess, SoaAccess, TcpAccess
from bizcloud.authz.planner import Action, Op, VersionedConfig, desired, plan
from bizcloud.configcenter.schema import Inventory, ServiceConfig
from bizcloud.monitor.model import Group, Instance, PodUid

INVENTORY = Inventory.model_validate(
    {
        "mysql": {
            "orders": {
                "master": {"host": "10.1.0.1", "port": 3306},
                "slaves": [{"host": "10.1.0.2"}, {"host": "10.1.0.3", "port": 3307}],
                "admin": {"namespace": "bizcloud-system", "name": "orders-admin"},
            },
            "prod-db": {
                "master": {"host": "10.2.0.1"},
                "admin": {"namespace": "bizcloud-system", "name": "p"},
                "environments": ["prod"],
            },
        },
        "hosts": {"fw": {"address": "10.3.0.1", "ports": [9000, 6379]}},
        "redis": {"cache": {"host": "fw", "port": 6379}},
    }
)


def config(name: str, version: int = 1, **dependencies: Any) -> VersionedConfig:
    return VersionedConfig(
        ServiceConfig.model_validate({"name": name, "dependencies": dependencies}), version
    )


def pod(
    service: str,
    ip: str,
    *,
    env: str = "dev",
    ready: bool = True,
    terminating: bool = False,
    stopped: bool = False,
    name: str | None = None,
) -> Instance:
    name = name or f"{service}-{ip.rsplit('.', 1)[-1]}"
    return Instance(
        service=service,
        env=env,
        group=Group.NORMAL,
        namespace=f"bc-{env}",
        pod=name,
        uid=PodUid(f"uid-{name}"),
        ip=ip,
        ports={"http": 8080},
        ready=ready,
        terminating=terminating,
        stopped=stopped,
    )


ORDERS_RW = {
    "cluster": "orders",
    "database": "orders",
    "user": "orders_svc",
    "privileges": ["select", "insert"],
    "roles": ["master", "slaves"],
}


def mysql(ip: str, target: str, *, service: str = "api", env: str = "dev") -> Grant:
    return Grant(
        Kind.MYSQL, ip, target, MysqlAccess("orders_svc", "orders", ("INSERT", "SELECT"), service, env)
    )


CASES: list[tuple[str, dict[str, VersionedConfig], list[Instance], set[Grant]]] = [
    ("no config, no grant", {}, [pod("api", "10.88.0.5")], set()),
    (
        "mysql on master and both slaves",
        {"api": config("api", mysql=[ORDERS_RW])},
        [pod("api", "10.88.0.5")],
        {
            mysql("10.88.0.5", "orders/10.1.0.1:3306"),
            mysql("10.88.0.5", "orders/10.1.0.2:3306"),
            mysql("10.88.0.5", "orders/10.1.0.3:3307"),
        },
    ),
    (
        "master only",
        {"api": config("api", mysql=[{**ORDERS_RW, "roles": ["master"]}])},
        [pod("api", "10.88.0.5")],
        {mysql("10.88.0.5", "orders/10.1.0.1:3306")},
    ),
    (
        "not Ready yet: granted already (it connects while starting; its gate waits for this)",
        {"api": config("api", mysql=[ORDERS_RW])},
        [pod("api", "10.88.0.5", ready=False)],
        {
            mysql("10.88.0.5", "orders/10.1.0.1:3306"),
            mysql("10.88.0.5", "orders/10.1.0.2:3306"),
            mysql("10.88.0.5", "orders/10.1.0.3:3307"),
        },
    ),
    (
        "no IP yet: nothing",
        {"api": config("api", mysql=[ORDERS_RW])},
        [Instance(service="api", env="dev", group=Group.NORMAL, namespace="bc-dev", pod="api-0",
                  uid=PodUid("uid-api-0"), ip=None)],
        set(),
    ),
    (
        "being deleted, still draining: keeps its grants for requests in flight",
        {"api": config("api", mysql=[{**ORDERS_RW, "roles": ["master"]}])},
        [pod("api", "10.88.0.5", terminating=True)],
        {mysql("10.88.0.5", "orders/10.1.0.1:3306")},
    ),
    (
        "being deleted and its containers stopped: nothing",
        {"api": config("api", mysql=[ORDERS_RW])},
        [pod("api", "10.88.0.5", terminating=True, stopped=True)],
        set(),
    ),
    (
        "redis and tcp become firewall grants",
        {"w": config("w", redis=[{"instance": "cache"}], tcp=[{"host": "fw", "port": 9000}])},
        [pod("w", "10.88.0.7")],
        {
            Grant(Kind.TCP, "10.88.0.7", "fw", TcpAccess(6379)),
            Grant(Kind.TCP, "10.88.0.7", "fw", TcpAccess(9000)),
        },
    ),
    (
        "soa: each consumed interface",
        {"web": config("web", soa=[{"interfaces": ["a.A", "b.B"]}])},
        [pod("web", "10.88.0.8"), pod("web", "10.88.0.9")],
        {
            Grant(Kind.SOA, ip, iface, SoaAccess())
            for ip in ("10.88.0.8", "10.88.0.9")
            for iface in ("a.A", "b.B")
        },
    ),
]


@pytest.mark.parametrize(
    ("configs", "instances", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_desired_grants(
    configs: dict[str, VersionedConfig], instances: list[Instance], expected: set[Grant]
) -> None:
    assert desired(configs, INVENTORY, instances).grants() == expected


def test_every_target_is_planned_even_without_grants_so_orphans_are_removed() -> None:
    result = desired({"api": config("api", mysql=[ORDERS_RW])}, INVENTORY, [])
    assert set(result.plans) == {
        (Kind.MYSQL, "orders/10.1.0.1:3306"),
        (Kind.MYSQL, "orders/10.1.0.2:3306"),
        (Kind.MYSQL, "orders/10.1.0.3:3307"),
        (Kind.MYSQL, "prod-db/10.2.0.1:3306"),
        (Kind.TCP, "fw"),
    }
    master = result.plans[(Kind.MYSQL, "orders/10.1.0.1:3306")]
    assert master.desired == frozenset() and master.scope == {"orders_svc"}
    assert result.plans[(Kind.TCP, "fw")].scope == {"9000", "6379"}


def test_scope_keeps_users_and_interfaces_of_older_versions() -> None:
    result = desired(
        {"web": config("web", soa=[{"interfaces": ["a.A"]}])},
        INVENTORY,
        [],
        owned_mysql_users={"orders": frozenset({"old_user"})},
        owned_interfaces=["gone.Iface"],
    )
    assert result.plans[(Kind.MYSQL, "orders/10.1.0.2:3306")].scope == {"old_user"}
    assert (Kind.SOA, "gone.Iface") in result.plans and (Kind.SOA, "a.A") in result.plans


def test_a_production_cluster_refuses_other_environments_and_says_why() -> None:
    dependency = {"cluster": "prod-db", "database": "p", "user": "p_user", "privileges": ["SELECT"]}
    configs = {"api": config("api", 3, mysql=[dependency])}
    result = desired(
        configs, INVENTORY, [pod("api", "10.88.0.5", env="test"), pod("api", "10.88.0.6", env="prod")]
    )
    assert [g.subject_ip for g in result.grants()] == ["10.88.0.6"]
    [refusal] = result.refusals
    assert (refusal.ip, refusal.dependency, refusal.env) == ("10.88.0.5", "mysql[0]", "test")
    assert "does not serve environment 'test'" in refusal.message


def test_reasons_name_the_pod_and_config_version() -> None:
    configs = {"web": config("web", 7, soa=[{"interfaces": ["a.A"]}])}
    result = desired(configs, INVENTORY, [pod("web", "10.88.0.8", name="web-abc")])
    [(grant, reasons)] = result.reasons.items()
    assert grant.target == "a.A"
    assert [(r.pod, r.pod_uid, r.config_version, r.dependency) for r in reasons] == [
        ("web-abc", "uid-web-abc", 7, "soa[0]")
    ]


G1 = Grant(Kind.TCP, "10.0.0.1", "fw", TcpAccess(9000))
G2 = Grant(Kind.TCP, "10.0.0.2", "fw", TcpAccess(9000))
G3 = Grant(Kind.TCP, "10.0.0.3", "fw", TcpAccess(9000))


@pytest.mark.parametrize(
    ("actual", "wanted", "actions"),
    [
        ([], [], []),
        ([G1], [G1], []),
        ([], [G2, G1], [Action(Op.ADD, G1), Action(Op.ADD, G2)]),
        ([G1, G2], [], [Action(Op.REMOVE, G1), Action(Op.REMOVE, G2)]),
        ([G1, G2], [G2, G3], [Action(Op.REMOVE, G1), Action(Op.ADD, G3)]),
    ],
    ids=["nothing", "converged", "adds sorted", "removes", "removes before adds"],
)
def test_plan(actual: list[Grant], wanted: list[Grant], actions: list[Action]) -> None:
    assert plan(actual, wanted) == actions
