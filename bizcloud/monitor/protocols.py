"""The plug points of the monitor: what a subscriber, the catalog view and the journal must offer.

The monitor imports none of their implementations (the catalog, gateway, SOA registry and
authorization live above it); they implement these Protocols and are wired together by the
process that runs the monitor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bizcloud.monitor.model import Instance, InstanceEvent, PodUid


class Subscriber(Protocol):
    """Receives every instance event, at least once, in order per pod uid.

    ``handle`` must be idempotent (the same event may arrive again after a retry or a restart)
    and raise to ask for a retry.
    """

    name: str

    async def handle(self, event: InstanceEvent) -> None: ...


class BatchSubscriber(Protocol):
    """A subscriber that takes many events at once, in arrival order (each pod's order kept).

    For stores where one write per event would be the bottleneck; the same idempotency and
    retry rules as ``Subscriber`` apply to the whole batch.
    """

    name: str

    async def handle_batch(self, events: Sequence[InstanceEvent]) -> None: ...


class CatalogView(Protocol):
    """What the reconciler compares the cluster with: the instances the catalog believes in."""

    async def instances(self) -> dict[PodUid, Instance]: ...


class Journal(Protocol):
    """Where the dispatcher records each event's outcome per subscriber."""

    async def record(self, *, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                     error: str | None = None) -> None: ...


class BatchJournal(Journal, Protocol):
    """A journal that can record one outcome for many events in one write."""

    async def record_batch(self, *, events: Sequence[InstanceEvent], subscriber: str, outcome: str,
                           attempts: int, error: str | None = None) -> None: ...
