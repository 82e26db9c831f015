"""The SOA whitelist executor: a Dubbo interface's whitelist is exactly its consumers' live IPs.

Writes go through ``bizcloud.soa.whitelist`` (the SOA registry's own writer, both places Dubbo
reads a condition router), so there is one definition of a whitelist on disk. kazoo's synchronous
calls wait for a connection forever; the executor refuses to start one while disconnected, so a
ZooKeeper outage is a retry in the journal instead of a stuck worker.
"""

from __future__ import annotations

import asyncio

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.authz.grants import Converged, Grant, Kind, SoaAccess, TargetPlan
from bizcloud.soa.whitelist import get_whitelist, set_whitelist


class SoaWhitelistExecutor:
    kind = Kind.SOA

    def __init__(self, client: KazooClient) -> None:
        self._client = client

    async def converge(self, plan: TargetPlan, *, everything: bool = False) -> Converged:
        """Always a full read-back of the interface's whitelist (one ZooKeeper read): ``everything``
        changes nothing here."""
        return await asyncio.to_thread(self._converge, plan)

    def _converge(self, plan: TargetPlan) -> Converged:
        interface = plan.target
        if not self._client.connected:
            raise ExecutorUnavailableError(f"soa {interface}: ZooKeeper is not connected",
                                           hint="check that ZooKeeper runs (bizcloud status)")
        wanted = {g.subject_ip for g in plan.desired}
        try:
            current = get_whitelist(self._client, interface)  # None: open to every consumer
            before = current or frozenset()
            if current is None or before != wanted:
                set_whitelist(self._client, interface, wanted)
        except KazooException as e:
            raise ExecutorUnavailableError(f"soa {interface}: ZooKeeper refused the whitelist: {e!r}",
                                           hint="check that ZooKeeper runs (bizcloud status)") from e
        return Converged(
            added=tuple(sorted((g for g in plan.desired if g.subject_ip not in before), key=Grant.sort_key)),
            removed=tuple(Grant(Kind.SOA, ip, interface, SoaAccess()) for ip in sorted(before - wanted)))
