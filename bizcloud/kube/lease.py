"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

Several monitor replicas may run for availability, but only one may turn pod changes into
instance events (two would double every grant and every upstream change). Before it runs the
informer, a replica wins this election; the others wait and take over when the leader's Lease
expires (it crashed) or is released (it stopped cleanly, so the takeover is immediate).

Semantics as client-go: a Lease is free when it has no holder or its holder stopped renewing
for ``leaseDurationSeconds`` — measured on *our* monotonic clock from the moment we last saw the
record change, never by comparing the server's ``renewTime`` with our wall clock, so clock skew
between replicas cannot make two leaders. Every write carries the resourceVersion we read
(optimistic concurrency): a 409 means another candidate wrote first, and we lost this round.
The leader renews every ``retry_period``; if it cannot renew within ``renew_deadline`` it stops
leading before the Lease can expire for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bizcloud.kube.client import KubeClient, Obj
from bizcloud.kube.errors import Conflict, KubeApiError, KubeUnavailable, NotFound

log = logging.getLogger(__name__)

JITTER_FACTOR = 1.2   # client-go's: a candidate retries after retry_period * (1 + rand * 1.2)

Callback = Callable[[], Awaitable[None]]


def micro_time(moment: dt.datetime) -> str:
    """A Kubernetes MicroTime (``2026-01-01T00:00:00.000000Z``). Purely computational."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for one Lease. ``run`` campaigns, leads, and campaigns again after a loss."""

    def __init__(self, client: KubeClient, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        if not lease_duration > renew_deadline > retry_period * JITTER_FACTOR:
            raise ValueError("need lease_duration > renew_deadline > retry_period * 1.2 (as client-go)")
        if lease_duration < 1:
            raise ValueError("lease_duration must be at least 1 s (leaseDurationSeconds is an integer)")
        self.client = client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, \
            retry_period
        self._clock = clock
        self._rng = rng or random.Random()
        self._lease: Obj | None = None         # the Lease as we last read or wrote it
        self._observed_spec: Obj | None = None
        self._observed_at = 0.0                # our clock when _observed_spec last changed
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    async def run(self, stop: asyncio.Event, on_started_leading: Callback, on_stopped_leading: Callback
                  ) -> None:
        """Until ``stop`` is set; then release the Lease if we hold it, so another takes over at once.

        Cancelling the task instead (a crash, for the others) releases nothing: the Lease
        expires on its own. The callbacks must return promptly (start work in a task of your
        own); if one raises, the Lease is released and the exception propagates.
        """
        try:
            while await self._campaign(stop):
                self._leading = True
                self._log(logging.INFO, "started leading")
                try:
                    await on_started_leading()
                    await self._keep_renewing(stop)
                except Exception:
                    await self._release()
                    raise
                finally:
                    self._leading = False
                if stop.is_set():
                    await self._release()
                self._log(logging.INFO, "stopped leading", stopping=stop.is_set())
                await on_stopped_leading()
        finally:
            self._leading = False

    # --- the three phases ------------------------------------------------------------------------

    async def _campaign(self, stop: asyncio.Event) -> bool:
        """Try until we hold the Lease (True) or are told to stop (False)."""
        while not stop.is_set():
            if await self._attempt():
                return True
            delay = self.retry_period * (1.0 + self._rng.random() * JITTER_FACTOR)
            await _sleep(stop, delay)
        return False

    async def _keep_renewing(self, stop: asyncio.Event) -> None:
        """Renew every retry_period; return when stopping or when renew_deadline passed without success."""
        while not stop.is_set():
            deadline = self._clock() + self.renew_deadline
            while not await self._attempt(timeout=deadline - self._clock()):
                if stop.is_set():
                    return
                if self._clock() + self.retry_period >= deadline:
                    self._log(logging.WARNING, "could not renew within renew_deadline; stepping down")
                    return
                await _sleep(stop, self.retry_period)
            await _sleep(stop, self.retry_period)

    async def _release(self) -> None:
        """Leave the Lease free (no holder, 1 s duration), as client-go's ReleaseOnCancel does."""
        if self._lease is None or self._spec(self._lease).get("holderIdentity") != self.identity:
            return
        now = micro_time(dt.datetime.now(dt.UTC))
        body = copy.deepcopy(self._lease)
        body["spec"].update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
        try:
            self._observe(await self.client.update(self.path, body))
            self._log(logging.INFO, "released")
        except (KubeApiError, KubeUnavailable) as e:
            self._log(logging.WARNING, "release failed; the Lease will expire instead", error=e.message)

    # --- one try, as client-go's tryAcquireOrRenew --------------------------------------------------

    async def _attempt(self, *, timeout: float | None = None) -> bool:
        try:
            limit = self.renew_deadline if timeout is None else max(timeout, 0.05)
            return await asyncio.wait_for(self._try_acquire_or_renew(), timeout=limit)
        except TimeoutError:
            self._log(logging.WARNING, "lease request timed out")
        except Conflict:
            pass                                        # someone else wrote first: lost this round
        except (KubeApiError, KubeUnavailable) as e:
            self._log(logging.WARNING, "lease request failed", error=e.message)
        return False

    async def _try_acquire_or_renew(self) -> bool:
        now = micro_time(dt.datetime.now(dt.UTC))
        if self._leading and self._lease is not None and self._still_valid():
            try:                                        # fast path: renew what we wrote last time
                self._observe(await self.client.update(self.path, self._claim(self._lease, now)))
                return True
            except (KubeApiError, KubeUnavailable):
                pass                                    # fall back to reading the Lease first
        try:
            lease = await self.client.get(self.path)
        except NotFound:
            created = await self.client.create(self.path.rsplit("/", 1)[0], self._new_lease(now))
            self._observe(created)
            return True
        self._observe(lease)
        holder = self._spec(lease).get("holderIdentity") or ""
        if holder and holder != self.identity and self._still_valid():
            return False
        self._observe(await self.client.update(self.path, self._claim(lease, now)))
        return True

    def _claim(self, lease: Obj, now: str) -> Obj:
        """The Lease with us as holder; keeps acquireTime/transitions if we held it already."""
        body = copy.deepcopy(lease)
        spec = body.setdefault("spec", {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=round(self.lease_duration),
                    renewTime=now)
        return body

    def _new_lease(self, now: str) -> Obj:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": round(self.lease_duration),
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}

    def _observe(self, lease: Obj) -> None:
        self._lease = lease
        spec = self._spec(lease)
        if spec != self._observed_spec:
            self._observed_spec, self._observed_at = spec, self._clock()

    def _still_valid(self) -> bool:
        """Whether the holder we last saw may still be renewing, by our own clock."""
        duration = float((self._observed_spec or {}).get("leaseDurationSeconds") or 0)
        return self._observed_at + duration > self._clock()

    @staticmethod
    def _spec(lease: Obj) -> Obj:
        spec: Obj = lease.get("spec") or {}
        return spec

    def _log(self, level: int, message: str, **fields: Any) -> None:
        context = {"lease": f"{self.namespace}/{self.name}", "identity": self.identity, **fields}
        pairs = " ".join(f"{k}={v!r}" for k, v in context.items())
        log.log(level, "leader election %s %s", message, pairs)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake up as soon as ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))


__all__ = ["LeaderElector", "micro_time"]
