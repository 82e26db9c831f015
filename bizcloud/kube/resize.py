"""In-place pod resize: new CPU and memory for a running container, without restarting the pod.

One-click scale up/down (``bizcloud scale SVC --cpu 500m --memory 512Mi``) tries this first and
falls back to a rolling update of the Deployment when ``resize_pod`` returns False. It PATCHes the
``pods/NAME/resize`` subresource (InPlacePodVerticalScaling, beta and on by default since 1.33)
and then follows the pod until the kubelet reports the new resources in
``status.containerStatuses[].resources``, or says it cannot (condition ``PodResizePending`` with
reason ``Infeasible`` or ``Deferred``, or ``PodResizeInProgress`` with reason ``Error``).

What really happens on the local node (Kubernetes 1.34.4, Debian's containerd 1.6.20, cgroup v1
with the cgroupfs driver), observed while writing this: the resize is done in place. The kubelet
calls the CRI ``UpdateContainerResources``; containerd rewrites the running container's
``cpu.cfs_quota_us`` / ``cpu.shares`` / ``memory.limit_in_bytes`` (300m -> quota 30000, 150m ->
shares 153, 192Mi -> 201326592); the pod keeps its uid and restartCount stays 0; the status
shows the new values within about two seconds. Asking for more than the node has is reported at
once as ``PodResizePending``/``Infeasible``: "Node didn't have enough capacity: cpu, requested:
100000, capacity: 2000". The resize subresource wants a strategic merge patch (containers merge
by name); a JSON merge patch would replace the whole container list and is refused.

How the new values are chosen (``resize_patch``): ``cpu``/``memory`` set the container's
*request*; a limit, where there is one, moves in proportion (request 100m / limit 200m resized to
500m gives limit 1000m), so the pod's QoS class never changes — the API refuses a resize that
would change it. A BestEffort pod (no requests at all) cannot gain any in place: False, so the
caller rolls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal

from bizcloud import identifiers
from bizcloud.errors import KubeError
from bizcloud.kube import quantity
from bizcloud.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, Obj
from bizcloud.kube.errors import KubeApiError, NotFound
from bizcloud.kube.follow import follow

log = logging.getLogger(__name__)

RESOURCES = ("cpu", "memory")
UNSUPPORTED_STATUS = (404, 405)     # no such subresource (gate off, or a cluster older than 1.33)


class ResizeError(KubeError):
    """The kubelet could not apply the resize (``reason``: Infeasible, Deferred, Error, Timeout)."""

    def __init__(self, message: str, *, hint: str = "", reason: str = "") -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


def _container(pod: Obj, name: str) -> Obj:
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == name:
            return dict(container)
    names = ", ".join(c.get("name", "?") for c in containers) or "none"
    raise KubeError(f"pod {pod['metadata']['name']}: no container named {name!r}",
                    hint=f"name one of its containers: {names}")


def desired_resources(pod: Obj, container: str, new: dict[str, str]) -> dict[str, dict[str, str]]:
    """The container's new requests and limits (only the resources in ``new``). Pure.

    The request becomes the new value; an existing limit keeps its ratio to the request (or
    becomes the new value when the request was implicit, i.e. only a limit was set).
    """
    resources = _container(pod, container).get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    out: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for name, text in new.items():
        value = quantity.parse(text, field=name)
        out["requests"][name] = quantity.format_resource(name, value)
        if name in limits:
            request = quantity.parse(requests[name]) if name in requests else Decimal(0)
            limit = quantity.parse(limits[name])
            scaled = value * limit / request if request else value
            out["limits"][name] = quantity.format_resource(name, scaled)
    return {k: v for k, v in out.items() if v}


def resize_patch(container: str, resources: dict[str, dict[str, str]]) -> Obj:
    """The strategic merge patch for the resize subresource. Purely computational."""
    return {"spec": {"containers": [{"name": container, "resources": resources}]}}


def applied(pod: Obj, container: str, resources: dict[str, dict[str, str]]) -> bool:
    """Whether the pod's status reports ``resources`` for the container (values, not text). Pure."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            actual = status.get("resources") or {}
            return all(name in (actual.get(kind) or {})
                       and quantity.parse(actual[kind][name]) == quantity.parse(value)
                       for kind, values in resources.items() for name, value in values.items())
    return False


def refusal(pod: Obj, generation: int) -> tuple[str, str] | None:
    """(reason, message) when the kubelet reports this resize (``generation`` or later) cannot
    be done: ``PodResizePending`` Infeasible/Deferred, or ``PodResizeInProgress`` Error. Pure."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if int(condition.get("observedGeneration", generation)) < generation:
            continue        # about an older resize
        kind, reason = condition.get("type"), condition.get("reason", "")
        if (kind == "PodResizePending" and reason in ("Infeasible", "Deferred")) or \
                (kind == "PodResizeInProgress" and reason == "Error"):
            return reason, str(condition.get("message") or reason)
    return None


def in_progress(pod: Obj) -> bool:
    """Whether the kubelet still reports a resize under way or pending. Purely computational."""
    return any(c.get("type") in ("PodResizePending", "PodResizeInProgress") and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def resize_pod(client: KubeClient, namespace: str, pod: str, container: str, *,
                     cpu: str | None = None, memory: str | None = None, timeout: float = 60.0) -> bool:
    """Resize one container in place and wait until the pod reports it.

    False: the cluster offers no in-place resize for this pod (no ``resize`` subresource, or a
    BestEffort pod), so the caller should roll the Deployment instead. Raises ``ResizeError``
    naming the pod when the kubelet refuses (Infeasible, Deferred, Error) or ``timeout`` passes.
    """
    new = {name: value for name, value in (("cpu", cpu), ("memory", memory)) if value is not None}
    if cpu is not None:
        identifiers.cpu_quantity(cpu, "cpu")
    if memory is not None:
        identifiers.memory_quantity(memory, "memory")
    if not new:
        raise KubeError(f"resize of pod {namespace}/{pod}: nothing to change",
                        hint="give cpu, memory or both")
    collection = f"/api/v1/namespaces/{namespace}/pods"
    try:
        current = await client.get(f"{collection}/{pod}")
    except NotFound as e:
        raise KubeError(f"pod {namespace}/{pod} not found", hint="list the service's pods "
                        "(`bizcloud instances SVC`) and name one that exists") from e
    if (current.get("status") or {}).get("qosClass") == "BestEffort":
        log.info("in-place resize skipped pod=%s/%s reason=BestEffort", namespace, pod)
        return False
    resources = desired_resources(current, container, new)
    try:
        patched = await client.patch(f"{collection}/{pod}/resize", resize_patch(container, resources),
                                     content_type=STRATEGIC_MERGE_PATCH)
    except KubeApiError as e:
        if e.status in UNSUPPORTED_STATUS:
            log.info("in-place resize not offered pod=%s/%s status=%d", namespace, pod, e.status)
            return False
        raise KubeError(f"resize of pod {namespace}/{pod}: {e.api_message or e}",
                        hint="check the values (a resize must keep the pod's QoS class)") from e
    generation = int(patched["metadata"].get("generation", 0))
    await _wait_applied(client, namespace, pod, container, resources=resources, generation=generation,
                        timeout=timeout)
    return True


async def _wait_applied(client: KubeClient, namespace: str, pod: str, container: str, *,
                        resources: dict[str, dict[str, str]], generation: int, timeout: float) -> None:
    collection = f"/api/v1/namespaces/{namespace}/pods"
    versions = follow(client, collection, pod)
    try:
        async with asyncio.timeout(timeout), contextlib.aclosing(versions):
            async for obj in versions:
                if obj is None:
                    raise ResizeError(f"pod {namespace}/{pod} was deleted during its resize",
                                      reason="Deleted")
                refused = refusal(obj, generation)
                if refused:
                    reason, message = refused
                    raise ResizeError(f"resize of pod {namespace}/{pod} {reason}: {message}",
                                      hint="ask for less, or scale out instead of up", reason=reason)
                if applied(obj, container, resources) and not in_progress(obj):
                    log.info("resized pod=%s/%s container=%s resources=%s", namespace, pod, container,
                             resources)
                    return
    except TimeoutError as e:
        raise ResizeError(f"resize of pod {namespace}/{pod} not reported done after {timeout:.0f}s",
                          hint="look at the pod's conditions (`kubectl describe pod`)",
                          reason="Timeout") from e


__all__ = ["ResizeError", "applied", "desired_resources", "refusal", "resize_patch", "resize_pod"]
