"""Writing a pod condition of our own: how a readiness gate is opened or held.

A pod whose spec lists a readiness gate is Ready only when a condition of that type is True in its
status; the kubelet leaves such conditions to whoever owns them. The write is a strategic merge
patch on the ``status`` subresource, so it merges by condition type and leaves the kubelet's own
conditions alone (a JSON merge patch would replace the whole list). The pod's uid travels in the
patch as a precondition, so a decision about one pod never lands on a successor of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bizcloud.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, Obj


@dataclass(frozen=True)
class PodCondition:
    type: str
    status: bool
    reason: str     # CamelCase, one word, as Kubernetes conditions have it
    message: str


def condition_patch(uid: str, condition: PodCondition, *, now: datetime | None = None) -> Obj:
    """The patch body. Purely computational."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"uid": uid},
            "status": {"conditions": [{"type": condition.type, "status": str(condition.status),
                                       "reason": condition.reason, "message": condition.message,
                                       "lastProbeTime": None, "lastTransitionTime": stamp}]}}


async def set_pod_condition(client: KubeClient, *, namespace: str, pod: str, uid: str,
                            condition: PodCondition) -> Obj:
    return await client.patch(f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
                              condition_patch(uid, condition), content_type=STRATEGIC_MERGE_PATCH)
