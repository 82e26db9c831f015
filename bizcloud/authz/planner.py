"""Desired grants from the dependency graph and the live instances, and the actions between two states.

Pure: no I/O, no clock. ``desired`` is called after every instance event and every config change
with the whole picture (configs, inventory, the instances holding an address), and returns every
target with the grants it must hold and the scope BizCloud owns there. A target with no desired
grant is still planned (with its scope), so the accounts, rules and whitelist entries of pods that
died are removed: "converge to desired", never "apply what the event said".

Rules:
- An instance is granted from the moment it has an IP until its processes have stopped after its
  deletion, Ready or not: applications connect to their dependencies while they start, before a
  readiness probe passes (and a probe may check exactly that), and requests in flight while a
  deleted pod drains still finish with their sessions. Traffic still waits for Ready, and a pod with the
  ``bizcloud.io/authorized`` readiness gate is not Ready before its grants are in place.
- A resource that lists ``environments`` grants only to instances of those environments; any
  other is refused (and the refusal is reported), so a test pod never gets a production account.
- MySQL: one account per pod IP on each server of the declared roles (the master, each slave).
- Redis and TCP: an iptables ACCEPT for the pod IP on the firewalled host's port.
- SOA: the pod IP on the whitelist of each interface it consumes. An interface is managed once
  any config consumes it; its whitelist is then exactly the consumers' live IPs.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bizcloud.authz.grants import (
    Grant,
    Kind,
    MysqlAccess,
    Reason,
    SoaAccess,
    TargetPlan,
    TcpAccess,
    mysql_target,
)
from bizcloud.configcenter.schema import Inventory, ServiceConfig
from bizcloud.monitor.model import Instance


@dataclass(frozen=True)
class VersionedConfig:
    config: ServiceConfig
    version: int


@dataclass(frozen=True)
class Refusal:
    """A dependency that was not granted to an instance, and why (shown by ``bizcloud grants``)."""

    service: str
    env: str
    pod: str
    ip: str
    dependency: str
    message: str


@dataclass
class Desired:
    """Every target's plan, the reasons of each desired grant, and what was refused."""

    plans: dict[tuple[Kind, str], TargetPlan] = field(default_factory=dict)
    reasons: dict[Grant, tuple[Reason, ...]] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    # (pod uid, IP) of every addressed instance of a configured service this was planned from. A
    # pod not in it is not judged by this plan: it got its IP after the plan was made, or its
    # service is not in this config center (another installation's pod): its gate is not ours.
    subjects: frozenset[tuple[str, str]] = frozenset()

    def grants(self) -> frozenset[Grant]:
        return frozenset(self.reasons)


class Op(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class Action:
    op: Op
    grant: Grant


def plan(actual: Iterable[Grant], desired: Iterable[Grant]) -> list[Action]:
    """The actions that turn ``actual`` into ``desired``: removals first, each list in a stable order.

    Removals go first so a revoked address loses access before anything new is opened; the order
    inside each list is deterministic (journals and tests read the same sequence every time).

    >>> g = Grant(Kind.TCP, "10.0.0.1", "fw", TcpAccess(80))
    >>> plan([], [g]) == [Action(Op.ADD, g)]
    True
    """
    actual_set, desired_set = frozenset(actual), frozenset(desired)
    removes = sorted(actual_set - desired_set, key=Grant.sort_key)
    adds = sorted(desired_set - actual_set, key=Grant.sort_key)
    return [Action(Op.REMOVE, g) for g in removes] + [Action(Op.ADD, g) for g in adds]


def _allowed(environments: frozenset[str], env: str) -> bool:
    return not environments or env in environments


def desired(configs: Mapping[str, VersionedConfig], inventory: Inventory, instances: Iterable[Instance], *,
            owned_mysql_users: Mapping[str, frozenset[str]] | None = None,
            owned_interfaces: Iterable[str] = ()) -> Desired:
    """The grants every addressed instance must hold, grouped into one plan per target.

    ``owned_mysql_users`` (cluster → users) and ``owned_interfaces`` add what older config versions
    declared, so a user or interface dropped from a config is still cleaned up instead of orphaned.
    """
    grants: dict[Grant, list[Reason]] = defaultdict(list)
    refusals: list[Refusal] = []
    users: dict[str, set[str]] = defaultdict(set)
    for cluster, names in (owned_mysql_users or {}).items():
        users[cluster] |= names
    interfaces: set[str] = set(owned_interfaces)
    for latest in configs.values():
        for mysql in latest.config.dependencies.mysql:
            users[mysql.cluster].add(mysql.user)
        for soa in latest.config.dependencies.soa:
            interfaces.update(soa.interfaces)

    subjects: set[tuple[str, str]] = set()
    for instance in instances:
        versioned = configs.get(instance.service)
        if versioned is None or not instance.addressed or not instance.ip:
            continue
        subjects.add((instance.uid, instance.ip))
        for item in _instance_grants(instance, versioned.config, inventory):
            if isinstance(item, Refusal):
                refusals.append(item)
            else:
                grant, dependency = item
                grants[grant].append(_reason(instance, versioned.version, dependency))

    by_target: dict[tuple[Kind, str], set[Grant]] = defaultdict(set)
    for grant in grants:
        by_target[(grant.kind, grant.target)].add(grant)
    plans: dict[tuple[Kind, str], TargetPlan] = {}
    for name, mysql_cluster in inventory.mysql.items():
        for server in (mysql_cluster.master, *mysql_cluster.slaves):
            key = (Kind.MYSQL, mysql_target(name, server.host, server.port))
            plans[key] = TargetPlan(Kind.MYSQL, key[1], frozenset(by_target.pop(key, ())),
                                    frozenset(users.get(name, ())))
    for name, host in inventory.hosts.items():
        key = (Kind.TCP, name)
        plans[key] = TargetPlan(Kind.TCP, name, frozenset(by_target.pop(key, ())),
                                frozenset(str(p) for p in host.ports))
    for interface in interfaces:
        key = (Kind.SOA, interface)
        plans[key] = TargetPlan(Kind.SOA, interface, frozenset(by_target.pop(key, ())),
                                frozenset({interface}))
    # Every grant's target comes from the inventory or a consumed interface, so nothing is left
    # over; if something were, it would be a planner bug worth failing loudly on.
    assert not by_target, f"grants for unplanned targets: {sorted(by_target)}"
    return Desired(plans=plans, reasons={g: tuple(r) for g, r in grants.items()}, refusals=refusals,
                   subjects=frozenset(subjects))


def _instance_grants(instance: Instance, config: ServiceConfig,
                     inventory: Inventory) -> Iterator[tuple[Grant, str] | Refusal]:
    """What one addressed instance is granted (with the dependency that asks for it) or refused."""
    ip, env = instance.ip or "", instance.env
    refuse = functools.partial(_refusal, instance)
    deps = config.dependencies
    for i, mysql in enumerate(deps.mysql):
        dependency = f"mysql[{i}]"
        cluster = inventory.mysql.get(mysql.cluster)
        if cluster is None:
            yield refuse(dependency, f"unknown MySQL cluster {mysql.cluster!r}")
        elif not _allowed(cluster.environments, env):
            yield refuse(dependency, f"cluster {mysql.cluster!r} does not serve environment {env!r}")
        else:
            access = MysqlAccess(user=mysql.user, database=mysql.database, service=instance.service, env=env,
                                 privileges=tuple(sorted(mysql.privileges)))
            servers = ([cluster.master] if "master" in mysql.roles else []) + \
                      (list(cluster.slaves) if "slaves" in mysql.roles else [])
            for server in servers:
                target = mysql_target(mysql.cluster, server.host, server.port)
                yield Grant(Kind.MYSQL, ip, target, access), dependency
    for i, redis_dep in enumerate(deps.redis):
        dependency = f"redis[{i}]"
        redis = inventory.redis.get(redis_dep.instance)
        if redis is None:
            yield refuse(dependency, f"unknown Redis {redis_dep.instance!r}")
        elif not _allowed(redis.environments, env):
            yield refuse(dependency, f"Redis {redis_dep.instance!r} does not serve environment {env!r}")
        else:
            yield Grant(Kind.TCP, ip, redis.host, TcpAccess(redis.port)), dependency
    for i, tcp in enumerate(deps.tcp):
        dependency = f"tcp[{i}]"
        host = inventory.hosts.get(tcp.host)
        if host is None:
            yield refuse(dependency, f"unknown host {tcp.host!r}")
        elif not _allowed(host.environments, env):
            yield refuse(dependency, f"host {tcp.host!r} does not serve environment {env!r}")
        else:
            yield Grant(Kind.TCP, ip, tcp.host, TcpAccess(tcp.port)), dependency
    for i, soa in enumerate(deps.soa):
        for interface in soa.interfaces:
            yield Grant(Kind.SOA, ip, interface, SoaAccess()), f"soa[{i}]"


def _reason(instance: Instance, version: int, dependency: str) -> Reason:
    return Reason(service=instance.service, env=instance.env, namespace=instance.namespace, pod=instance.pod,
                  pod_uid=instance.uid, config_version=version, dependency=dependency)


def _refusal(instance: Instance, dependency: str, message: str) -> Refusal:
    return Refusal(service=instance.service, env=instance.env, pod=instance.pod, ip=instance.ip or "",
                   dependency=dependency, message=message)
