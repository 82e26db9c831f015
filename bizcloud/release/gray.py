"""The gray controller: runs ``gray_plan``'s transitions against the cluster, the catalog and ZooKeeper.

Where it sits: the API (``gray_api``) and the runner loop call it; it decides nothing itself. Each
operation takes the service+env's lock (``ReleaseStore.operation``: a second one meanwhile gets
``OperationConflict``, HTTP 409), loads the ``GrayState``, asks ``gray_plan`` for the next state and
its actions, **stores the state first**, then executes the actions in order:

- ``ScaleGroup`` — with an image: ``Releaser.deploy(gray=(image, normal, gray))`` (render + apply,
  no wait); without: a patch of the workload's ``scale`` subresource;
- ``WaitReady`` — the workload's rollout complete, then that many Ready instances of the group (at
  the workload's release) in the catalog, which is what the gateway and the SOA registry follow;
- ``SetTraffic`` — the same ``GrayPolicy`` to the catalog (the gateways follow its change stream)
  and to ZooKeeper (``/bizcloud/gray/<svc>``, the SOA consumers watch it);
- ``Analyse`` — started in the background (it must not hold the lock for a whole window): two
  scrapes of the gateway's ``/metrics`` ``window_s`` apart, judged by ``analysis.verdict``; the
  verdict reaches the state machine at the runner's next tick, unless the release moved meanwhile;
- ``SetNormalImage`` — a deploy of the normal workload at that image, replica counts kept;
- ``Record`` — a history row, finished ``ok`` or ``failed`` with the batch.

After a batch, ``tick`` hears whether it completed or failed (a failed step rolls back on its
own). ``run_forever`` first re-runs ``converge`` for every active release (a restart mid-batch
leaves the stored state ahead of the cluster, never behind), then ticks every few seconds.

Known limit: the gateway's and the SOA layer's gray policies are per service, not per environment,
so a service may have one active gray release at a time, in one environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import httpx

from bizcloud import identifiers
from bizcloud.catalog.errors import CatalogError
from bizcloud.catalog.models import utcnow
from bizcloud.catalog.policies import GrayPolicyOut
from bizcloud.catalog.store import CatalogStore
from bizcloud.errors import BizCloudError
from bizcloud.kube.apply import live_object
from bizcloud.kube.resources import ObjectRef
from bizcloud.kube.rollout import wait_rollout
from bizcloud.monitor.model import Group
from bizcloud.release import gray_plan
from bizcloud.release.analysis import Outcome, StatsError, Thresholds, Verdict, Window, parse, verdict, window
from bizcloud.release.deploy import WORKLOAD_API, Releaser
from bizcloud.release.gray_plan import (
    ACTIVE,
    Action,
    Analyse,
    GrayError,
    GrayState,
    Observations,
    Phase,
    Plan,
    Record,
    ScaleGroup,
    SetNormalImage,
    SetTraffic,
    WaitReady,
)
from bizcloud.release.params import namespace_of, release_of, workload_name
from bizcloud.release.store import OperationConflict, OperationLock, ReleaseStore
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper
from bizcloud.usersplit import GrayPolicy, GroupName

log = logging.getLogger("bizcloud.release.gray")

CONTROLLER = "gray-controller"
USER_PATIENCE_S = 2.0     # how long a person's operation waits for the lock before the 409
MAX_CHAINED_BATCHES = 8   # a batch's tick may ask for another (a failed step → rollback); never loop forever


class GrayNotFound(BizCloudError):  # noqa: N818  (reads as the condition, like catalog.NotFound)
    """The service, its deployment in the environment, or its gray release does not exist."""


class TrafficTarget(Protocol):
    """One layer that splits users by a service's ``GrayPolicy`` (the gateway's catalog, ZooKeeper)."""

    name: str

    async def set_policy(self, service: str, policy: GrayPolicy) -> None: ...


class CatalogTraffic:
    """The gateways' side: the catalog's gray policy, keeping where the gateway reads the user ID."""

    name = "catalog"

    def __init__(self, catalog: CatalogStore) -> None:
        self.catalog = catalog

    async def set_policy(self, service: str, policy: GrayPolicy) -> None:
        def write() -> None:
            now = self.catalog.get_gray(service=service)
            self.catalog.set_gray(policy=GrayPolicyOut(
                service=service, ratio=policy.ratio, whitelist=tuple(sorted(policy.whitelist)),
                fallback=policy.fallback, uid_source=now.uid_source, uid_name=now.uid_name))
        try:
            await asyncio.to_thread(write)
        except CatalogError as e:
            raise BizCloudError(f"gray policy of {service}: the catalog refused it: {e.one_line()}",
                                hint="the monitor adds a service to the catalog with its first Ready pod; "
                                     "check `bizcloud instances SVC`") from e


class ZooKeeperTraffic:
    """The SOA layer's side: ``/bizcloud/gray/<service>``, which every consumer watches.

    The session opens on first use, so a server starts without waiting for ZooKeeper, and a
    registry that is down fails the step that needs it (which rolls back), not the server.
    """

    name = "zookeeper"

    def __init__(self, hosts: str) -> None:
        self.hosts = hosts
        self._client: Any = None   # kazoo.client.KazooClient, started

    def _write(self, service: str, policy: GrayPolicy) -> None:
        from kazoo.client import KazooClient  # noqa: PLC0415 - kazoo only where used

        from bizcloud.soa.consumer import write_gray_policy  # noqa: PLC0415

        if self._client is None:
            client = KazooClient(hosts=self.hosts)
            client.start(timeout=10)
            self._client = client
        write_gray_policy(self._client, service, policy)

    async def set_policy(self, service: str, policy: GrayPolicy) -> None:
        try:
            await asyncio.to_thread(self._write, service, policy)
        except Exception as e:  # kazoo's errors have no common base worth naming
            raise BizCloudError(f"gray policy of {service}: ZooKeeper at {self.hosts} refused it: {e!r}",
                                hint="check that the registry runs (`bizcloud status`)") from e

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client.close()
            self._client = None


def seconds(value: str | int | float, *, field: str = "interval") -> int:
    """``60``, ``"60"``, ``"60s"``, ``"2m"``, ``"1h"`` → whole seconds (≥ 1), or an error naming ``field``.

    >>> seconds("90s"), seconds("2m"), seconds(30)
    (90, 120, 30)
    """
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\s*(s|m|h)?", text)
    if isinstance(value, bool) or match is None or int(match.group(1)) < 1:
        raise BizCloudError(f"{field}: {value!r} is not a duration",
                            hint=f"give {field} as whole seconds, or with a unit: 60s, 5m, 1h "
                                 "(1 second or more)")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]


def state_json(state: GrayState) -> dict[str, Any]:
    """A release as the API and ``bizcloud gray status --json`` show it."""
    pods = state.split() if state.phase in (Phase.RUNNING, Phase.PAUSED) else None

    def at(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"service": state.service, "env": state.env, "phase": state.phase.value,
            "active": state.phase in ACTIVE, "image": state.image, "release": state.release,
            "base_image": state.base_image, "base_release": state.base_release, "ratio": state.ratio,
            "steps": list(state.steps), "step_index": state.step_index, "interval_s": state.interval_s,
            "whitelist": sorted(state.whitelist), "thresholds": state.thresholds.to_json(),
            "replicas": state.replicas,
            "pods": {"gray": pods.gray if pods else 0, "normal": pods.normal if pods else state.replicas},
            "message": state.message, "started_by": state.started_by, "started_at": at(state.started_at),
            "updated_at": at(state.updated_at), "next_step_at": at(state.next_step_at)}


def _mark(state: GrayState) -> tuple[Any, ...]:
    """What an analysis judged: a verdict about another step (or a moved ratio) is stale."""
    return state.phase, state.ratio, state.step_index, state.whitelist, state.started_at


@dataclasses.dataclass
class _Analysis:
    mark: tuple[Any, ...]
    task: asyncio.Task[tuple[Verdict, Window | None]]


class GrayController:
    """Gray releases of services deployed by ``releaser``; share one per server process."""

    def __init__(self, *, releaser: Releaser, store: ReleaseStore, catalog: CatalogStore,
                 traffic: Sequence[TrafficTarget], metrics_url: str, tick_s: float = 3.0,
                 ready_timeout: float = 300.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.releaser = releaser
        self.store = store
        self.catalog = catalog
        self.traffic = list(traffic)
        self.metrics_url = metrics_url
        self.tick_s = tick_s
        self.ready_timeout = ready_timeout
        self.clock = clock
        self._analyses: dict[tuple[str, str], _Analysis] = {}
        self._last: dict[tuple[str, str], dict[str, Any]] = {}   # the last verdict, for status

    @classmethod
    def from_settings(cls, *, releaser: Releaser, store: ReleaseStore, catalog: CatalogStore,
                      settings: Settings) -> GrayController:
        """The server's controller: the catalog and the configured (or local) ZooKeeper as traffic
        targets, the local gateway's admin port for stats."""
        traffic: list[TrafficTarget] = [CatalogTraffic(catalog)]
        hosts = zookeeper.resolve_hosts(settings)
        if hosts:
            traffic.append(ZooKeeperTraffic(hosts))
        else:
            log.warning(json.dumps({"msg": "no ZooKeeper: gray policies reach the gateways only"}))
        return cls(releaser=releaser, store=store, catalog=catalog, traffic=traffic,
                   metrics_url=f"http://127.0.0.1:{settings.gateway_admin_port}/metrics")

    # --- operations (the API's) ------------------------------------------------------------------

    async def start(self, service: str, env: str, *, image: str, ratio: float | None = None,
                    uids: Sequence[str] = (), steps: Sequence[float] = (), interval: str | int = 60,
                    thresholds: Thresholds | None = None, user: str) -> GrayState:
        """Start trying ``image`` on ``ratio`` percent of users (and ``uids``) next to what runs now."""
        interval_s = seconds(interval)
        identifiers.image(image, "image")
        others = [g for g in await asyncio.to_thread(self.store.grays)
                  if g.service == service and g.env != env and g.phase in ACTIVE]
        if others:
            other = others[0]
            raise GrayError(f"gray start: {service} already has a gray release in {other.env} "
                            f"({other.image}, {other.phase.value}); gray policies are per service, "
                            "not per environment",
                            hint=f"promote or roll back that one first "
                                 f"(`bizcloud gray rollback {service} --env {other.env}`)")
        config = await self.releaser.config(service)
        running = await self.releaser.running(config, env)
        if running.normal is None:
            raise GrayNotFound(f"{service} is not deployed in environment {env!r} "
                               f"(no workload in namespace {namespace_of(env)})",
                               hint=f"check the environment's name, or deploy first: "
                                    f"`bizcloud deploy {service} --env {env}`")
        base_image = running.image("normal") or ""
        labels = running.normal["spec"]["template"]["metadata"].get("labels") or {}
        base_release = str(labels.get("bizcloud.io/release") or release_of(base_image))

        def transition(previous: GrayState | None) -> Plan:
            return gray_plan.start(previous, service=service, env=env, image=image, release=release_of(image),
                                   base_image=base_image, base_release=base_release,
                                   replicas=running.replicas("normal"), now=self.clock(), user=user,
                                   ratio=ratio, steps=steps, interval_s=interval_s, whitelist=frozenset(uids),
                                   thresholds=thresholds)
        return await self._operate(service, env, "gray-start", user, transition, must_exist=False)

    async def set_ratio(self, service: str, env: str, *, ratio: float, uids: Sequence[str] | None = None,
                        user: str) -> GrayState:
        listed = None if uids is None else frozenset(uids)
        return await self._operate(service, env, "gray-set", user, lambda s: gray_plan.set_ratio(
            s, ratio=ratio, now=self.clock(), whitelist=listed))

    async def pause(self, service: str, env: str, *, user: str) -> GrayState:
        return await self._operate(service, env, "gray-pause", user,
                                   lambda s: gray_plan.pause(s, now=self.clock()))

    async def resume(self, service: str, env: str, *, user: str) -> GrayState:
        return await self._operate(service, env, "gray-resume", user,
                                   lambda s: gray_plan.resume(s, now=self.clock()))

    async def promote(self, service: str, env: str, *, user: str) -> GrayState:
        return await self._operate(service, env, "gray-promote", user,
                                   lambda s: gray_plan.promote(s, now=self.clock()))

    async def rollback(self, service: str, env: str, *, user: str, reason: str = "") -> GrayState:
        return await self._operate(service, env, "gray-rollback", user, lambda s: gray_plan.rollback(
            s, now=self.clock(), reason=reason or f"rolled back by {user}"))

    async def status(self, service: str, env: str, *, limit: int = 20) -> dict[str, Any]:
        """The release (None if there never was one), its last verdict and its history, newest first."""
        state = await asyncio.to_thread(self.store.gray, service, env)
        history = await asyncio.to_thread(self.store.history, service=service, env=env, limit=limit)
        key = (service, env)
        analysing = key in self._analyses and not self._analyses[key].task.done()
        return {"gray": state_json(state) if state else None, "analysing": analysing,
                "last_analysis": self._last.get(key),
                "history": [{"id": h.id, "action": h.action, "user": h.user, "outcome": h.outcome,
                             "message": h.message, "detail": h.detail, "started_at": h.started_at.isoformat(),
                             "finished_at": h.finished_at.isoformat() if h.finished_at else None}
                            for h in history]}

    # --- the runner ------------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Converge every active release once (after a restart), then tick every ``tick_s`` seconds."""
        for state in await asyncio.to_thread(self.store.grays):
            if state.phase in ACTIVE:
                await self._guarded(self._converge(state))
        while True:
            await self.tick_all()
            await asyncio.sleep(self.tick_s)

    async def tick_all(self) -> None:
        for state in await asyncio.to_thread(self.store.grays):
            if state.phase in (Phase.RUNNING, Phase.PROMOTING, Phase.ROLLING_BACK):
                await self._guarded(self._tick(state))

    async def close(self) -> None:
        for analysis in self._analyses.values():
            analysis.task.cancel()
        await asyncio.gather(*(a.task for a in self._analyses.values()), return_exceptions=True)
        for target in self.traffic:
            if isinstance(target, ZooKeeperTraffic):
                await asyncio.to_thread(target.close)

    async def _guarded(self, work: Any) -> None:
        """One release's runner work; another operation holding it, or a failure, waits for the next tick."""
        try:
            await work
        except OperationConflict:
            pass
        except Exception:  # the runner must outlive one release's trouble; say it loudly
            log.exception("gray runner: a release's tick failed")

    async def _converge(self, state: GrayState) -> None:
        async with self._locked(state.service, state.env, "gray-converge", CONTROLLER) as lock:
            current = await asyncio.to_thread(self.store.gray, state.service, state.env)
            if current is not None and current.phase in ACTIVE:
                log.info(json.dumps({"msg": "gray converge", "service": current.service, "env": current.env,
                                     "phase": current.phase.value}))
                await self._run(lock, current, gray_plan.converge(current), CONTROLLER)

    async def _tick(self, state: GrayState) -> None:
        key = (state.service, state.env)
        running = self._analyses.get(key)
        if running is not None and not running.task.done():
            return
        seen = self._verdict(key, state)
        probe, actions = gray_plan.tick(state, now=self.clock(), seen=seen)
        if not actions and probe == state:
            return
        async with self._locked(state.service, state.env, "gray-step", CONTROLLER) as lock:
            current = await asyncio.to_thread(self.store.gray, state.service, state.env)
            if current != state:    # someone moved it meanwhile: the verdict was about the old step
                return
            new, actions = gray_plan.tick(current, now=self.clock(), seen=seen)
            await asyncio.to_thread(self.store.put_gray, new)
            await self._run(lock, new, actions, CONTROLLER)

    def _verdict(self, key: tuple[str, str], state: GrayState) -> Observations:
        analysis = self._analyses.pop(key, None)
        if analysis is None or analysis.mark != _mark(state) or analysis.task.cancelled():
            return Observations()
        if analysis.task.exception() is not None:
            return Observations(verdict=Verdict(Outcome.INCONCLUSIVE, f"analysis failed: "
                                                                      f"{analysis.task.exception()!r}"))
        return Observations(verdict=analysis.task.result()[0])

    # --- executing a plan ------------------------------------------------------------------------

    async def _operate(self, service: str, env: str, name: str, user: str,
                       transition: Callable[[GrayState | None], Plan], *,
                       must_exist: bool = True) -> GrayState:
        async with self._locked(service, env, name, user, patience_s=USER_PATIENCE_S) as lock:
            state = await asyncio.to_thread(self.store.gray, service, env)
            if state is None and must_exist:
                raise GrayNotFound(f"{name}: {service} has no gray release in environment {env!r}",
                                   hint=gray_plan.NO_RELEASE)
            new, actions = transition(state)      # GrayError: refused, nothing changed
            await asyncio.to_thread(self.store.put_gray, new)
            return await self._run(lock, new, actions, user)

    @contextlib.asynccontextmanager
    async def _locked(self, service: str, env: str, name: str, holder: str, *,
                      patience_s: float = 0.0) -> AsyncIterator[OperationLock]:
        """The service+env's lock; ``patience_s`` rides out the runner's short holds (a tick storing a
        verdict) so a person's command is refused only by an operation that really runs."""
        stack = contextlib.ExitStack()
        deadline = asyncio.get_running_loop().time() + patience_s
        while True:
            try:
                lock = await asyncio.to_thread(stack.enter_context,
                                               self.store.operation(service, env, name, holder))
                break
            except OperationConflict:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            yield lock
        finally:
            await asyncio.shield(asyncio.to_thread(stack.close))

    async def _run(self, lock: OperationLock, state: GrayState, actions: list[Action],
                   user: str) -> GrayState:
        """Execute ``actions`` (``state`` is stored), tell ``tick`` how it went, and follow its answer."""
        for _ in range(MAX_CHAINED_BATCHES):
            failure = await self._execute(lock, state, actions, user)
            new, actions = gray_plan.tick(state, now=self.clock(),
                                          seen=Observations(completed=failure is None, failure=failure))
            if new != state:
                await asyncio.to_thread(self.store.put_gray, new)
            state = new
            if not actions:
                break
        return state

    async def _execute(self, lock: OperationLock, state: GrayState, actions: list[Action],
                       user: str) -> str | None:
        """Run the actions in order; the first failure stops the batch and is returned as text."""
        entries: list[int] = []
        failure: str | None = None
        try:
            for action in actions:
                await asyncio.to_thread(lock.renew)
                log.info(json.dumps({"msg": "gray action", "service": state.service, "env": state.env,
                                     "action": type(action).__name__, **_fields(action)}))
                if isinstance(action, Record):
                    entries.append(await asyncio.to_thread(
                        self.store.record, service=state.service, env=state.env, action=action.action,
                        user=user, message=action.message,
                        detail={"image": state.image, "ratio": state.ratio, "phase": state.phase.value}))
                elif isinstance(action, ScaleGroup):
                    await self._scale(state, action)
                elif isinstance(action, WaitReady):
                    await self._wait_ready(state, action.group, action.replicas)
                elif isinstance(action, SetTraffic):
                    for target in self.traffic:
                        await target.set_policy(state.service, action.policy)
                elif isinstance(action, SetNormalImage):
                    await self._set_normal_image(state, action)
                elif isinstance(action, Analyse):
                    self._start_analysis(state, action.window_s)
        except BizCloudError as e:
            failure = e.one_line()
        except Exception as e:  # an unexpected failure still ends the batch as a failed step
            log.exception("gray action failed")
            failure = repr(e)
        if failure:
            log.warning(json.dumps({"msg": "gray batch failed", "service": state.service, "env": state.env,
                                    "failure": failure}))
        for entry in entries:
            await asyncio.to_thread(self.store.finish, entry, outcome="failed" if failure else "ok",
                                    message=failure or "")
        return failure

    async def _workload(self, state: GrayState, group: GroupName) -> tuple[ObjectRef, str]:
        """The group's workload and its API path (Deployment or StatefulSet, by the service's type)."""
        config = await self.releaser.config(state.service)
        api_version, kind = WORKLOAD_API[config.type]
        namespace = namespace_of(state.env)
        name = workload_name(state.service, group)
        plural = "deployments" if kind == "Deployment" else "statefulsets"
        path = f"/apis/{api_version}/namespaces/{namespace}/{plural}/{name}"
        return ObjectRef(api_version, kind, namespace, name), path

    async def _scale(self, state: GrayState, action: ScaleGroup) -> None:
        if action.image is not None:   # the gray group at a new image: render and apply both workloads
            config = await self.releaser.config(state.service)
            running = await self.releaser.running(config, state.env)
            counts = (running.replicas("normal"), action.replicas) if action.group == "gray" else \
                (action.replicas, running.replicas("gray"))
            await self.releaser.deploy(state.service, state.env, wait=False,
                                       gray=(action.image if action.group == "gray" else
                                             running.image("gray") or state.image, *counts))
            return
        _, path = await self._workload(state, action.group)
        await self.releaser.client.patch(f"{path}/scale", {"spec": {"replicas": action.replicas}})

    async def _set_normal_image(self, state: GrayState, action: SetNormalImage) -> None:
        config = await self.releaser.config(state.service)
        running = await self.releaser.running(config, state.env)
        await self.releaser.deploy(state.service, state.env, image=action.image, wait=False,
                                   gray=(running.image("gray") or state.image, running.replicas("normal"),
                                         running.replicas("gray")))

    async def _wait_ready(self, state: GrayState, group: GroupName, replicas: int) -> None:
        """The rollout done, then ``replicas`` Ready instances of the group at its release in the catalog."""
        if replicas <= 0:
            return
        ref, _ = await self._workload(state, group)
        deadline = asyncio.get_running_loop().time() + self.ready_timeout
        await wait_rollout(self.releaser.client, ref, timeout=self.ready_timeout)
        live = await live_object(self.releaser.client, ref)
        labels = (live or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        release = labels.get("bizcloud.io/release")
        wanted = Group.GRAY if group == "gray" else Group.NORMAL

        def serving() -> int:
            return sum(1 for i in self.catalog.instances(service=state.service, env=state.env, group=wanted)
                       if i.ready and not i.terminating and (release is None or i.release == release))
        while (count := await asyncio.to_thread(serving)) < replicas:
            if asyncio.get_running_loop().time() > deadline:
                raise BizCloudError(f"{ref.name}: {count} of {replicas} instances Ready in the catalog after "
                                    f"{self.ready_timeout:.0f}s",
                                    hint="is the monitor running? (`bizcloud status`)")
            await asyncio.sleep(0.2)

    def _start_analysis(self, state: GrayState, window_s: int) -> None:
        key = (state.service, state.env)
        previous = self._analyses.pop(key, None)
        if previous is not None:
            previous.task.cancel()
        task = asyncio.create_task(self._analyse(state, window_s), name=f"gray-analysis-{key}")
        self._analyses[key] = _Analysis(mark=_mark(state), task=task)

    async def _scrape(self, client: httpx.AsyncClient) -> Any:
        response = await client.get(self.metrics_url)
        response.raise_for_status()
        return parse(response.text)

    async def _analyse(self, state: GrayState, window_s: int) -> tuple[Verdict, Window | None]:
        """Two scrapes ``window_s`` apart; an unreachable gateway is inconclusive, never a rollback."""
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                first = await self._scrape(client)
                await asyncio.sleep(window_s)
                last = await self._scrape(client)
        except (httpx.HTTPError, StatsError) as e:
            reason = f"gateway stats at {self.metrics_url} unavailable: {e!r}"
            result: tuple[Verdict, Window | None] = (Verdict(Outcome.INCONCLUSIVE, reason), None)
        else:
            win = window(first, last, service=state.service, group="gray", env=state.env)
            result = (verdict(win, state.thresholds), win)
        self._last[(state.service, state.env)] = {
            "outcome": result[0].outcome.value, "reason": result[0].reason, "ratio": state.ratio,
            "window": result[1].to_json() if result[1] else None, "at": self.clock().isoformat()}
        log.info(json.dumps({"msg": "gray analysis", "service": state.service, "env": state.env,
                             "outcome": result[0].outcome.value, "reason": result[0].reason}))
        return result


def _fields(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(action):
        value = getattr(action, f.name)
        out[f.name] = value.to_json() if isinstance(value, GrayPolicy) else value
    return out
