"""The values the monitor hands downstream: instances and instance events.

Everything after the informer speaks these, never Kubernetes objects: a subscriber (catalog,
gateway, SOA registry, authorization) needs to know which service, environment and group an
address belongs to and whether it may take traffic — nothing else about a pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

PodUid = NewType("PodUid", str)


class Group(StrEnum):
    NORMAL = "normal"
    GRAY = "gray"


class EventType(StrEnum):
    UP = "UP"            # the instance may take traffic (Ready, has an IP, not terminating)
    DOWN = "DOWN"        # it must not (any more): gone, terminating, not Ready, or lost its IP
    CHANGED = "CHANGED"  # still UP, but something subscribers care about changed (ports, release…)


@dataclass(frozen=True)
class Instance:
    """One pod as a member of a service: where it listens and whether it is serving."""

    service: str
    env: str
    group: Group
    namespace: str
    pod: str
    uid: PodUid
    ip: str | None
    ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number
    ready: bool = False
    node: str | None = None
    release: str | None = None
    terminating: bool = False
    # Every container has terminated (or the pod has Succeeded/Failed): the pod holds an IP but no
    # process runs in it any more. Only meaningful once ``terminating``: a new pod's containers
    # have not started yet either.
    stopped: bool = False
    # The pod's ``bizcloud.io/soa-interfaces`` annotation as written (validated by the SOA
    # registry, which owns its meaning); None when absent. Not stored by the catalog.
    soa_interfaces: str | None = None
    # The pod's ``bizcloud.io/authorized`` readiness gate: None when the pod has none, else whether
    # BizCloud has set that condition True (its grants are in place, so it may become Ready).
    authorized: bool | None = None

    @property
    def serving(self) -> bool:
        """Only a Ready pod with an IP that is not being deleted takes traffic."""
        return self.ready and bool(self.ip) and not self.terminating

    @property
    def addressed(self) -> bool:
        """A pod with an IP may open connections until its processes have stopped, so it holds its
        grants for all that time: from before Ready (an application connects to its database while
        it starts, and a readiness probe may check exactly that) until after its deletion has
        drained (requests in flight when it left every upstream still finish, with their database
        sessions intact). Its traffic, by contrast, stops at the deletion's first moment."""
        return bool(self.ip) and not (self.terminating and self.stopped)


@dataclass(frozen=True)
class InstanceEvent:
    """A change of one instance. ``instance`` is the new state (for DOWN, the last known one)."""

    type: EventType
    instance: Instance
    resource_version: str = ""
    observed_at: float = 0.0  # time.time() when the monitor saw the pod change

    @property
    def uid(self) -> PodUid:
        return self.instance.uid
