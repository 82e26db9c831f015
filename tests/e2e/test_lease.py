"""Leader election on a real Lease: one leader at a time, takeover after a crash, release on stop.

Each test runs its candidates in one event loop against the real API server, in a namespace of
its own. A "crash" is cancelling the leader's task: nothing is released, so the other candidate
must wait for the Lease to expire by its own clock. A clean stop releases the Lease, so the
other candidate takes over at its next retry instead of after a whole lease duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from bizcloud.kube.client import KubeClient
from bizcloud.kube.errors import Conflict, NotFound
from bizcloud.kube.lease import JITTER_FACTOR, LeaderElector
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
async def ns(kube: KubeClient) -> AsyncIterator[str]:
    name = f"bc-e2e-lease-{uuid.uuid4().hex[:6]}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    await kube.delete(f"/api/v1/namespaces/{name}")


class Candidate:
    """One elector, its task, and what its callbacks saw."""

    def __init__(self, kube: KubeClient, namespace: str, identity: str, *, lease_duration: float,
                 renew_deadline: float, retry_period: float) -> None:
        self.elector = LeaderElector(kube, namespace=namespace, name="monitor", identity=identity,
                                     lease_duration=lease_duration, renew_deadline=renew_deadline,
                                     retry_period=retry_period)
        self.stop = asyncio.Event()
        self.started = 0
        self.stopped = 0
        self.task: asyncio.Task[None] | None = None

    async def _on_started(self) -> None:
        self.started += 1

    async def _on_stopped(self) -> None:
        self.stopped += 1

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self.stop, self._on_started, self._on_stopped))
        return self

    async def stop_cleanly(self) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task

    async def crash(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    @property
    def leads(self) -> bool:
        return self.elector.is_leader


async def test_one_leader_and_a_takeover_only_after_the_crashed_leaders_lease_expires(
        kube: KubeClient, ns: str) -> None:
    timing = {"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5}
    a = Candidate(kube, ns, "monitor-a", **timing).start()
    b = Candidate(kube, ns, "monitor-b", **timing).start()
    try:
        await eventually(lambda: a.leads or b.leads, timeout=10, what="a leader")
        for _ in range(60):                              # 3 s of both contending
            assert a.leads != b.leads, "exactly one candidate leads"
            await asyncio.sleep(0.05)
        leader, follower = (a, b) if a.leads else (b, a)
        lease = await kube.get(leader.elector.path)
        assert lease["spec"]["holderIdentity"] == leader.elector.identity
        assert lease["spec"]["leaseDurationSeconds"] == 4
        assert lease["spec"]["renewTime"].endswith("Z") and len(lease["spec"]["renewTime"]) == 27
        transitions = lease["spec"]["leaseTransitions"]

        await leader.crash()
        crashed = time.monotonic()
        await eventually(lambda: follower.leads, timeout=15, what="the follower to take over")
        took = time.monotonic() - crashed
        # The follower last saw the lease change at most one (jittered) retry before the crash,
        # and it notices expiry at its next (jittered) retry after lease_duration on its clock.
        worst = timing["lease_duration"] + 2 * timing["retry_period"] * (1 + JITTER_FACTOR) + 0.5
        print(f"takeover {took:.2f}s after the crash (bound {worst:.1f}s)")
        assert timing["lease_duration"] - timing["retry_period"] - 0.2 <= took <= worst, took

        lease = await kube.get(leader.elector.path)
        assert lease["spec"]["holderIdentity"] == follower.elector.identity
        assert lease["spec"]["leaseTransitions"] == transitions + 1
        assert (leader.started, leader.stopped) == (1, 0), "a crashed leader runs no callbacks"
        assert follower.started == 1
    finally:
        for candidate in (a, b):
            await candidate.crash()


async def test_a_clean_stop_releases_the_lease_at_once(kube: KubeClient, ns: str) -> None:
    timing = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 0.5}
    a = Candidate(kube, ns, "monitor-a", **timing).start()
    await eventually(lambda: a.leads, timeout=10, what="the first candidate to lead")
    b = Candidate(kube, ns, "monitor-b", **timing).start()
    try:
        await asyncio.sleep(1.5)
        assert a.leads and not b.leads

        await a.stop_cleanly()
        released = time.monotonic()
        assert (a.started, a.stopped, a.leads) == (1, 1, False)
        await eventually(lambda: b.leads, timeout=10, what="the second candidate to take over")
        took = time.monotonic() - released
        print(f"takeover {took:.2f}s after the release")
        assert took <= timing["retry_period"] * (1 + JITTER_FACTOR) + 0.5, took
        lease = await kube.get(b.elector.path)
        assert lease["spec"]["holderIdentity"] == "monitor-b"
        assert lease["spec"]["leaseDurationSeconds"] == 15
        assert lease["spec"]["leaseTransitions"] == 1  # created by a (0); a release keeps the count

        # optimistic concurrency, as the elector relies on it: a stale resourceVersion is a Conflict
        stale = {**lease, "metadata": {**lease["metadata"], "resourceVersion": "1"}}
        with pytest.raises(Conflict):
            await kube.update(b.elector.path, stale)
        with pytest.raises(NotFound):
            await kube.get(b.elector.path + "-absent")
    finally:
        await b.stop_cleanly()
    lease = await kube.get(b.elector.path)
    assert lease["spec"].get("holderIdentity", "") == ""
