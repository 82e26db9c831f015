"""When a gated pod may become Ready: every grant it needs is in place and none was refused.

Deployed pods list the readiness gate ``bizcloud.io/authorized``; the kubelet keeps them un-Ready
until that condition is True, and the worker sets it once this module says so. Until then a new
pod takes no traffic from the gateway or SOA consumers, so no request reaches a pod that would fail
it for want of a database account or a whitelist entry, and a rolling update keeps the old pods
until the new ones are authorized. Once open, a gate stays open: a serving pod is never taken out
of traffic by a target's hiccup. Pure: the worker passes its plan and what each target was last
converged to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping

from bizcloud.authz.grants import Grant, Kind, TargetPlan
from bizcloud.authz.planner import Desired
from bizcloud.kube.conditions import PodCondition
from bizcloud.monitor.instances import AUTHORIZED_GATE
from bizcloud.monitor.model import Instance

Key = tuple[Kind, str]
MESSAGE_MAX = 512


def needs_by_pod(plan: Desired) -> dict[str, dict[Key, set[Grant]]]:
    """pod uid → target → the grants desired for that pod there. Purely computational."""
    keys = {g: key for key, target in plan.plans.items() for g in target.desired}
    needs: dict[str, dict[Key, set[Grant]]] = defaultdict(lambda: defaultdict(set))
    for grant, reasons in plan.reasons.items():
        key = keys.get(grant)
        if key is not None:
            for reason in reasons:
                needs[reason.pod_uid][key].add(grant)
    return needs


def gate_condition(instance: Instance, plan: Desired, needs: Mapping[Key, Collection[Grant]], *,
                   done: Mapping[Key, TargetPlan], failing: Mapping[Key, int],
                   kinds: Collection[Kind]) -> PodCondition | None:
    """The condition to write for ``instance``, or None while its grants are still on their way
    (or the plan was made before the pod had its IP, or its service has no config here).

    True once every target holds the pod's grants (as last converged; kinds with no executor in
    this process are not waited for). A grant the config refuses (an environment the resource does
    not serve) will never come, so it does not hold the gate: waiting would only turn a deliberate
    refusal into a stuck rollout; the condition's message names it. False, with the targets named,
    while a target keeps failing: the pod stays out of traffic and `kubectl describe pod` says why.
    """
    if instance.ip is None or (instance.uid, instance.ip) not in plan.subjects:
        return None  # newer than the plan (the next plan decides), or a service we hold no config of
    waiting: list[str] = []
    broken: list[str] = []
    for key, grants in needs.items():
        kind, target = key
        if kind not in kinds:
            continue
        held = done.get(key)
        if held is not None and set(grants) <= held.desired:
            continue
        (broken if key in failing else waiting).append(f"{kind} {target}")
    if broken:
        text = f"grants failing on {', '.join(sorted(broken))} (retried with backoff; see `bizcloud grants`)"
        return PodCondition(AUTHORIZED_GATE, False, "GrantFailing", text[:MESSAGE_MAX])
    if waiting:
        return None
    count = sum(len(g) for k, g in needs.items() if k[0] in kinds)
    text = f"{count} grants in place"
    refused = [r for r in plan.refusals if r.pod == instance.pod and r.ip == instance.ip]
    if refused:
        text += "; refused: " + "; ".join(f"{r.dependency}: {r.message}" for r in refused)
    return PodCondition(AUTHORIZED_GATE, True, "GrantsInPlace", text[:MESSAGE_MAX])
