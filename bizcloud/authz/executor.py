"""The one interface every executor implements, and the error that asks for a retry."""

from __future__ import annotations

from typing import Protocol

from bizcloud.authz.grants import Converged, Kind, TargetPlan
from bizcloud.errors import BizCloudError


class ExecutorUnavailableError(BizCloudError):
    """The target could not be reached or refused a statement; retry later (nothing half-applied
    survives: the next converge reads the actual state back and finishes the job)."""


class Executor(Protocol):
    """Converges one target to a plan: reads the actual state back, applies the difference.

    Safe to run twice and after a crash half-way: it never applies "what the event said", only
    the difference between what the target holds and ``plan.desired`` within ``plan.scope``.

    ``everything`` asks for a full read-back of the target (the worker's first converge and its
    periodic resync), so drift made by hand is repaired. Without it an executor may read back
    only what changed since its last successful converge (the MySQL executor does, to keep a
    pod's grant fast among thousands of accounts); one that always reads everything ignores it.
    """

    kind: Kind

    async def converge(self, plan: TargetPlan, *, everything: bool = False) -> Converged: ...

