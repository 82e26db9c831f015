"""Pod -> Instance, and (old, new) -> InstanceEvent: the monitor's pure decisions.

Purely computational, no side effects: the informer feeds raw pod JSON in, the dispatcher sends
the events out. Keeping the rules here, apart from I/O, is what lets them be tested as tables.

Rules (DESIGN.md conventions):
- a pod belongs to service ``bizcloud.io/service`` in environment ``bizcloud.io/env`` (or, when
  that label is missing, the ``<env>`` of namespace ``bc-<env>``), group ``bizcloud.io/group``
  (``normal`` when missing), release ``bizcloud.io/release``;
- its ports are its containers' *named* ports; it needs one named ``http`` or ``soa``;
- it is UP only while Ready, with an IP, and without a deletionTimestamp: a pod being deleted is
  DOWN at once, before its containers have finished handling SIGTERM, so traffic leaves it first;
- it holds its grants (``Instance.addressed``) from its IP until its processes have stopped after
  its deletion, so requests in flight while it drains keep their database sessions;
- a pod whose spec lists the readiness gate ``bizcloud.io/authorized`` cannot be Ready before
  BizCloud sets that condition, which it does once the pod's grants are in place: a new pod takes
  no traffic it could not serve for want of a database account or a whitelist entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid

SERVICE_LABEL = "bizcloud.io/service"
ENV_LABEL = "bizcloud.io/env"
GROUP_LABEL = "bizcloud.io/group"
RELEASE_LABEL = "bizcloud.io/release"
SOA_INTERFACES_ANNOTATION = "bizcloud.io/soa-interfaces"
AUTHORIZED_GATE = "bizcloud.io/authorized"
TRAFFIC_PORTS = ("http", "soa")
ENV_NAMESPACE_PREFIX = "bc-"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class SkipReason(StrEnum):
    """Why a pod carrying the service label is not an instance (a metric label)."""

    BAD_SERVICE = "bad_service"
    NO_ENV = "no_env"
    BAD_ENV = "bad_env"
    BAD_GROUP = "bad_group"
    NO_TRAFFIC_PORT = "no_http_or_soa_port"
    CONFLICTING_PORTS = "conflicting_ports"


@dataclass(frozen=True)
class Skipped:
    uid: PodUid
    namespace: str
    pod: str
    reason: SkipReason


def _ports(pod: Mapping[str, Any]) -> dict[str, int] | None:
    """Named container ports; None when one name maps to two different numbers."""
    ports: dict[str, int] = {}
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            name, number = port.get("name"), port.get("containerPort")
            if not name or not isinstance(number, int) or port.get("protocol", "TCP") != "TCP":
                continue
            if ports.setdefault(name, number) != number:
                return None
    return ports


def _condition(pod: Mapping[str, Any], kind: str) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _stopped(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status", {})
    if status.get("phase") in {"Succeeded", "Failed"}:
        return True
    containers = status.get("containerStatuses") or []
    return bool(containers) and all("terminated" in (c.get("state") or {}) for c in containers)


def _authorized(pod: Mapping[str, Any]) -> bool | None:
    gates = pod.get("spec", {}).get("readinessGates") or []
    if not any(g.get("conditionType") == AUTHORIZED_GATE for g in gates):
        return None
    return _condition(pod, AUTHORIZED_GATE)


def instance_from_pod(pod: Mapping[str, Any]) -> Instance | Skipped:
    """The instance a pod is, or why it is not one. Purely computational."""
    meta = pod.get("metadata", {})
    labels: Mapping[str, str] = meta.get("labels") or {}
    uid, namespace, name = PodUid(meta.get("uid", "")), meta.get("namespace", ""), meta.get("name", "")

    def skip(reason: SkipReason) -> Skipped:
        return Skipped(uid=uid, namespace=namespace, pod=name, reason=reason)

    service = labels.get(SERVICE_LABEL, "")
    if not _DNS_LABEL.match(service):
        return skip(SkipReason.BAD_SERVICE)
    env = labels.get(ENV_LABEL)
    if env is None:
        if not namespace.startswith(ENV_NAMESPACE_PREFIX):
            return skip(SkipReason.NO_ENV)
        env = namespace.removeprefix(ENV_NAMESPACE_PREFIX)
    if not _DNS_LABEL.match(env):
        return skip(SkipReason.BAD_ENV)
    try:
        group = Group(labels.get(GROUP_LABEL, Group.NORMAL))
    except ValueError:
        return skip(SkipReason.BAD_GROUP)
    ports = _ports(pod)
    if ports is None:
        return skip(SkipReason.CONFLICTING_PORTS)
    if not any(p in ports for p in TRAFFIC_PORTS):
        return skip(SkipReason.NO_TRAFFIC_PORT)
    status = pod.get("status", {})
    return Instance(
        service=service, env=env, group=group, namespace=namespace, pod=name, uid=uid,
        ip=status.get("podIP") or None, ports=ports, ready=_condition(pod, "Ready"),
        node=pod.get("spec", {}).get("nodeName"), release=labels.get(RELEASE_LABEL),
        terminating=bool(meta.get("deletionTimestamp")), stopped=_stopped(pod),
        soa_interfaces=(meta.get("annotations") or {}).get(SOA_INTERFACES_ANNOTATION),
        authorized=_authorized(pod),
    )


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod with only what ``instance_from_pod`` and the monitor read. Purely computational.

    The informer's transform (``Reflector(transform=...)``, client-go's ``SetTransform``): it
    runs on each pod as it is decoded, so a 10,000-pod list keeps a few fields per pod instead
    of every decoded pod until the list ends — the full pods are freed while the API server is
    still sending, not all at once when the first commit wants the CPU. Whatever this drops,
    ``instance_from_pod`` must not read: ``tests/monitor/test_instances.py`` checks both give
    the same answer on every table row.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    slim_meta = {k: meta[k] for k in ("uid", "namespace", "name", "resourceVersion", "labels",
                                      "deletionTimestamp") if k in meta}
    soa = (meta.get("annotations") or {}).get(SOA_INTERFACES_ANNOTATION)
    if soa is not None:
        slim_meta["annotations"] = {SOA_INTERFACES_ANNOTATION: soa}
    slim_spec = {k: spec[k] for k in ("nodeName", "readinessGates") if k in spec}
    if "containers" in spec:
        slim_spec["containers"] = [{"ports": c["ports"]} if "ports" in c else {}
                                   for c in spec["containers"] or []]
    slim_status = {k: status[k] for k in ("podIP", "conditions", "phase") if k in status}
    if "containerStatuses" in status:
        slim_status["containerStatuses"] = [{"state": c["state"]} if "state" in c else {}
                                            for c in status["containerStatuses"] or []]
    return {"metadata": slim_meta, "spec": slim_spec, "status": slim_status}


def same_for_subscribers(a: Instance, b: Instance) -> bool:
    return (a.service, a.env, a.group, a.ip, dict(a.ports), a.node, a.release, a.namespace, a.pod) == (
        b.service, b.env, b.group, b.ip, dict(b.ports), b.node, b.release, b.namespace, b.pod)


def diff(old: Instance | None, new: Instance | None) -> EventType | None:
    """What changed for subscribers between two states of one pod. Purely computational.

    >>> diff(None, None) is None
    True
    """
    was = old is not None and old.serving
    now = new is not None and new.serving
    if now and not was:
        return EventType.UP
    if was and not now:
        return EventType.DOWN
    if was and now and old is not None and new is not None and (
            not same_for_subscribers(old, new) or old.soa_interfaces != new.soa_interfaces):
        return EventType.CHANGED
    return None


def address_moved(old: Instance | None, new: Instance | None) -> bool:
    """Whether authorization must look again: the pod got its address, stopped after its deletion
    (or vanished), moved to another service or environment (what it is granted depends on both),
    or its gate moved.

    >>> address_moved(None, None)
    False
    """
    def key(i: Instance | None) -> tuple[str | None, str, str, bool | None] | None:
        return (i.ip, i.service, i.env, i.authorized) if i is not None and i.addressed else None
    return key(old) != key(new)


def events_for(old: Instance | None, new: Instance | None, *, resource_version: str = "",
               observed_at: float = 0.0) -> list[InstanceEvent]:
    """The events to dispatch for a pod moving from ``old`` to ``new``. Purely computational.

    A DOWN carries the last serving state, so a subscriber knows which address to withdraw even
    when the pod is already gone or has lost its IP. A serving pod whose service, environment or
    group label changes leaves its old place and joins the new one: DOWN then UP, so subscribers
    keyed by service or group (gateway upstreams, SOA providers) never keep it in both.
    """
    kind = diff(old, new)

    def event(kind: EventType, subject: Instance) -> InstanceEvent:
        return InstanceEvent(type=kind, instance=subject, resource_version=resource_version,
                             observed_at=observed_at)

    if kind is None:
        return []
    if kind is EventType.DOWN:
        assert old is not None
        return [event(kind, old)]
    assert new is not None
    if kind is EventType.CHANGED and old is not None and \
            (old.service, old.env, old.group) != (new.service, new.env, new.group):
        return [event(EventType.DOWN, old), event(EventType.UP, new)]
    return [event(kind, new)]
