"""Has a Deployment or StatefulSet rolled out? The rules of ``kubectl rollout status``, and the wait.

Last step of a deploy (render -> dry-run -> diff -> apply -> **wait**). ``rollout_status`` is
pure and follows kubectl's status viewers (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go)
rule for rule, so BizCloud and ``kubectl rollout status`` never disagree:

- nothing counts until the controller has seen the current spec (``observedGeneration``);
- a Deployment whose Progressing condition says ``ProgressDeadlineExceeded`` has failed;
- otherwise it waits for every replica to be updated, the old ones to be gone and the updated
  ones to be available;
- a StatefulSet (RollingUpdate only) waits for ready replicas, then for its partition or for
  ``currentRevision`` to reach ``updateRevision``.

``wait_rollout`` follows the one object with a watch (``bizcloud.kube.follow``) and, when the
rollout fails or the time is up, says *why* with what its pods report (``ErrImageNeverPull: ...``),
which the Deployment's own condition never names.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bizcloud.errors import KubeError
from bizcloud.kube.client import KubeClient, Obj, Objs
from bizcloud.kube.follow import follow
from bizcloud.kube.resources import ObjectRef, build_path, lookup

MAX_POD_PROBLEMS = 3


class RolloutState(StrEnum):
    PROGRESSING = "progressing"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutStatus:
    """Where a rollout stands; the counts feed a progress display (``updated`` of ``desired``)."""

    state: RolloutState
    message: str
    desired: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0

    @property
    def done(self) -> bool:
        return self.state is not RolloutState.PROGRESSING


class RolloutError(KubeError):
    """The rollout failed or did not finish in time; ``status`` is the last one seen."""

    def __init__(self, message: str, *, hint: str = "", status: RolloutStatus | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class RolloutTimeout(RolloutError):  # noqa: N818 - reads as the condition, like NotFound
    """The rollout was still progressing when the caller's timeout ran out."""


ProgressCallback = Callable[[RolloutStatus], Any]


def rollout_status(obj: Obj) -> RolloutStatus:
    """The rollout state of a Deployment or StatefulSet, as ``kubectl rollout status``. Pure."""
    kind = obj.get("kind")
    if kind == "Deployment":
        return _deployment_status(obj)
    if kind == "StatefulSet":
        return _statefulset_status(obj)
    raise KubeError(f"rollout status of a {kind}: only Deployments and StatefulSets roll out",
                    hint="wait for a Deployment or a StatefulSet")


def _counts(obj: Obj) -> dict[str, int]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {"desired": int(spec.get("replicas", 1)), "updated": int(status.get("updatedReplicas", 0)),
            "ready": int(status.get("readyReplicas", 0)),
            "available": int(status.get("availableReplicas", 0))}


def _observed(obj: Obj) -> bool:
    observed = int((obj.get("status") or {}).get("observedGeneration", 0))
    return int((obj.get("metadata") or {}).get("generation", 0)) <= observed


def _deployment_status(obj: Obj) -> RolloutStatus:
    counts, status = _counts(obj), obj.get("status") or {}

    def progressing(message: str) -> RolloutStatus:
        return RolloutStatus(RolloutState.PROGRESSING, message, **counts)

    if not _observed(obj):
        return progressing("waiting for the deployment spec update to be observed")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(RolloutState.FAILED, "exceeded its progress deadline: "
                                 + str(condition.get("message") or "no progress"), **counts)
    desired, updated, available = counts["desired"], counts["updated"], counts["available"]
    if updated < desired:
        return progressing(f"{updated} out of {desired} new replicas have been updated")
    replicas = int(status.get("replicas", 0))
    if replicas > updated:
        return progressing(f"{replicas - updated} old replicas are pending termination")
    if available < updated:
        return progressing(f"{available} of {updated} updated replicas are available")
    return RolloutStatus(RolloutState.COMPLETE, "successfully rolled out", **counts)


def _statefulset_status(obj: Obj) -> RolloutStatus:
    counts, spec, status = _counts(obj), obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return RolloutStatus(RolloutState.FAILED, "rollout status is only available for the RollingUpdate "
                             "strategy type", **counts)

    def progressing(message: str) -> RolloutStatus:
        return RolloutStatus(RolloutState.PROGRESSING, message, **counts)

    if not status.get("observedGeneration") or not _observed(obj):
        return progressing("waiting for the statefulset spec update to be observed")
    desired, ready, updated = counts["desired"], counts["ready"], counts["updated"]
    if ready < desired:
        return progressing(f"waiting for {desired - ready} pods to be ready")
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition is not None:
        if updated < desired - int(partition):
            return progressing(f"waiting for partitioned roll out to finish: {updated} out of "
                               f"{desired - int(partition)} new pods have been updated")
        return RolloutStatus(RolloutState.COMPLETE, f"partitioned roll out complete: {updated} new pods "
                             "have been updated", **counts)
    revision = status.get("updateRevision")
    if revision != status.get("currentRevision"):
        return progressing(f"waiting for statefulset rolling update to complete {updated} pods at "
                           f"revision {revision}")
    return RolloutStatus(RolloutState.COMPLETE, f"rolling update complete {updated} pods at revision "
                         f"{revision}", **counts)


def selector_string(obj: Obj) -> str:
    """``spec.selector.matchLabels`` as a label selector (``a=b,c=d``). Purely computational."""
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def pod_problems(pods: Objs, *, limit: int = MAX_POD_PROBLEMS) -> list[str]:
    """Why pods are not running: containers waiting with a reason other than starting, containers
    that crashed, pods that cannot be scheduled, and (when nothing more precise is known) pods
    that run but are not Ready. Purely computational."""
    problems: list[str] = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        for container in [*(status.get("initContainerStatuses") or []),
                          *(status.get("containerStatuses") or [])]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
                detail = f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
                if terminated:
                    detail += f" (last exit {terminated.get('exitCode')}: {terminated.get('reason')})"
                problems.append(f"pod {name} container {container.get('name')}: {detail}")
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        for kind in ("PodScheduled", "Ready"):     # unschedulable; else running but failing readiness
            condition = conditions.get(kind) or {}
            if condition.get("status") == "False" and not any(p.startswith(f"pod {name} ") for p in problems):
                problems.append(f"pod {name}: {condition.get('reason')}: {condition.get('message')}")
                break
    return problems[:limit]


async def _problems(client: KubeClient, ref: ObjectRef, obj: Obj | None) -> list[str]:
    selector = selector_string(obj) if obj else ""
    if not selector or not ref.namespace:
        return []
    pods, _ = await client.list(f"/api/v1/namespaces/{ref.namespace}/pods", label_selector=selector)
    return pod_problems(pods)


async def wait_rollout(client: KubeClient, ref: ObjectRef, *, timeout: float,
                       on_progress: ProgressCallback | None = None) -> RolloutStatus:
    """Follow the object until its rollout completes; raise ``RolloutError`` when it fails or
    ``RolloutTimeout`` after ``timeout`` seconds, naming the object, its state and its pods'
    problems. ``on_progress`` (sync or async) is called with each new status."""
    collection = build_path(ref.api_version, await lookup(client, ref.api_version, ref.kind), ref.namespace)
    seen: list[tuple[Obj, RolloutStatus]] = []       # the last version and its status, for the errors
    try:
        versions = follow(client, collection, ref.name)
        async with asyncio.timeout(timeout), contextlib.aclosing(versions):
            async for found in versions:
                if found is None:
                    raise RolloutError(f"{ref} does not exist (or was deleted while waiting for its rollout)",
                                       hint="apply it first; check `kubectl get` in its namespace")
                obj = {"apiVersion": ref.api_version, "kind": ref.kind, **found}  # list items lack them
                status = rollout_status(obj)
                if on_progress is not None and (not seen or seen[-1][1] != status):
                    result = on_progress(status)
                    if inspect.isawaitable(result):
                        await result
                seen[:] = [(obj, status)]
                if status.state is RolloutState.COMPLETE:
                    return status
                if status.state is RolloutState.FAILED:
                    break
    except TimeoutError as e:
        last_obj, last = seen[-1] if seen else (None, None)
        where = last.message if last else "no status yet"
        raise RolloutTimeout(f"rollout of {ref} not finished after {timeout:.0f}s: {where}"
                             + _joined(await _problems(client, ref, last_obj)),
                             hint="wait longer, or look at its pods (`kubectl describe pod`)",
                             status=last) from e
    obj, status = seen[-1]
    raise RolloutError(f"rollout of {ref} failed: {status.message}"
                       + _joined(await _problems(client, ref, obj)),
                       hint="fix the cause above and deploy again (or roll back)", status=status)


def _joined(problems: list[str]) -> str:
    return "".join(f"; {p}" for p in problems)


__all__ = ["RolloutError", "RolloutState", "RolloutStatus", "RolloutTimeout", "pod_problems",
           "rollout_status", "selector_string", "wait_rollout"]
