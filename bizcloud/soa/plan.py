"""What the registry should hold for a set of instances, and how to get there from what it holds.

Purely computational, no side effects: ``registry`` reads ZooKeeper, calls these, and applies
the result. An instance is a provider of each interface its ``bizcloud.io/soa-interfaces``
annotation names, at its pod IP and its container port named ``soa``, in its group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bizcloud.monitor.model import Instance
from bizcloud.soa.urls import (
    UID_PARAM,
    GroupName,
    InvalidInterfaceError,
    Provider,
    parse_interfaces,
    parse_provider,
    provider_params,
)

SOA_PORT = "soa"


def providers_of(instance: Instance) -> list[Provider]:
    """The provider entries of one serving instance; [] when it has no ``soa`` port.

    Raises ``InvalidInterfaceError`` (with a metric ``reason``) for a missing or malformed annotation.
    """
    port = instance.ports.get(SOA_PORT)
    if port is None or not instance.ip:
        return []
    interfaces = parse_interfaces(instance.soa_interfaces)
    extra = {"bizcloud.env": instance.env, "bizcloud.namespace": instance.namespace,
             "bizcloud.pod": instance.pod, UID_PARAM: instance.uid}
    if instance.release:
        extra["bizcloud.release"] = instance.release
    group: GroupName = "gray" if instance.group.value == "gray" else "normal"
    return [Provider(host=instance.ip, port=port, interface=interface, group=group,
                     params=provider_params(interface=interface, application=instance.service, group=group,
                                            extra=extra))
            for interface in interfaces]


@dataclass(frozen=True)
class Refusal:
    instance: Instance
    reason: str
    message: str


@dataclass
class Desired:
    """Provider nodes by interface, and the instances refused on the way."""

    nodes: dict[str, set[str]] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)


def desired(instances: Iterable[Instance]) -> Desired:
    """The registry's content for these (serving) instances. Purely computational."""
    result = Desired()
    for instance in instances:
        try:
            providers = providers_of(instance)
        except InvalidInterfaceError as e:
            result.refused.append(Refusal(instance, e.reason, str(e)))
            continue
        for provider in providers:
            result.nodes.setdefault(provider.interface, set()).add(provider.node)
    return result


@dataclass(frozen=True)
class Actions:
    create: tuple[tuple[str, str], ...] = ()  # (interface, node)
    delete: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.create or self.delete)


def plan(actual: Mapping[str, set[str]], wanted: Mapping[str, set[str]]) -> Actions:
    """Nodes to create and to delete so ``actual`` becomes ``wanted``. Purely computational.

    ``actual`` covers the interfaces the registry owns; any node there that is not wanted —
    a pod gone while we were down, a zombie written by hand — is deleted.

    >>> plan({"I": {"a", "z"}}, {"I": {"a", "b"}})
    Actions(create=(('I', 'b'),), delete=(('I', 'z'),))
    """
    create = [(i, n) for i in sorted(wanted) for n in sorted(wanted[i] - actual.get(i, set()))]
    delete = [(i, n) for i in sorted(actual) for n in sorted(actual[i] - wanted.get(i, set()))]
    return Actions(create=tuple(create), delete=tuple(delete))


def nodes_of_pod(children: Iterable[str], uid: str) -> list[str]:
    """The provider nodes among ``children`` that a pod's uid wrote. Purely computational."""
    found = []
    for node in children:
        try:
            if parse_provider(node).params.get(UID_PARAM) == uid:
                found.append(node)
        except ValueError:
            continue
    return found
