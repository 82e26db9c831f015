"""One-click scale: replica count and pod size, remembered in the config center.

A scale changes exactly what it names and nothing else a later config edit may hold back for the
next deploy: replicas go through the workload's ``scale`` subresource (no re-render, so an
undeployed config change is not rolled out by a scale); CPU and memory are resized in place on
every running pod where the cluster offers it (Kubernetes 1.33+ ``pods/resize``: no restart),
else the workload's template is patched and the pods roll. Either way the new values become a new
version of the service's config (``resources.<env>``, with who and why), so the next deploy keeps
them and `bizcloud config history` shows every scale.

After an in-place resize the workload's template still has the old size until the next deploy:
pods it creates before then (a node lost, a scale-out) start at the old size. ``--rolling`` avoids
that at the price of a restart; the outcome says which happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from bizcloud import identifiers
from bizcloud.configcenter.documents import plain
from bizcloud.configcenter.schema import Resources, ServiceConfig
from bizcloud.errors import BizCloudError
from bizcloud.kube.client import STRATEGIC_MERGE_PATCH
from bizcloud.kube.resize import resize_pod
from bizcloud.kube.rollout import RolloutStatus
from bizcloud.release.deploy import WORKLOAD_API, Releaser
from bizcloud.release.params import environment_resources, namespace_of, workload_name

log = logging.getLogger("bizcloud.release")

Method = Literal["in-place", "rolling", "none"]
MAX_REPLICAS = 1000


@dataclass
class ScaleOutcome:
    service: str
    env: str
    replicas: tuple[int, int] | None = None        # (before, after)
    resources: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (before, after)
    method: Method = "none"
    pods: list[str] = field(default_factory=list)
    config_version: int | None = None
    rollouts: dict[str, RolloutStatus] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "env": self.env, "method": self.method, "pods": self.pods,
                "replicas": list(self.replicas) if self.replicas else None,
                "resources": {k: list(v) for k, v in self.resources.items()},
                "config_version": self.config_version}


def scaled(resources: Resources, *, replicas: int | None, cpu: str | None, memory: str | None) -> Resources:
    """The environment's parameters with the new values; each checked, naming the option. Pure."""
    if replicas is not None and not 0 <= replicas <= MAX_REPLICAS:
        raise BizCloudError(f"--replicas: {replicas} is out of range", hint=f"give 0 to {MAX_REPLICAS}")
    if cpu is not None:
        identifiers.cpu_quantity(cpu, "--cpu")
    if memory is not None:
        identifiers.memory_quantity(memory, "--memory")
    if replicas is None and cpu is None and memory is None:
        raise BizCloudError("nothing to scale", hint="give --replicas, --cpu and/or --memory")
    changes = {k: v for k, v in (("replicas", replicas), ("cpu", cpu), ("memory", memory)) if v is not None}
    return resources.model_copy(update=changes)


def config_text(config: ServiceConfig, env: str, resources: Resources) -> str:
    """The config as YAML with ``resources.<env>`` replaced: the next version. Pure."""
    data = plain(config)
    data["resources"][env] = plain(resources)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


async def scale(releaser: Releaser, service: str, env: str, *, replicas: int | None = None,
                cpu: str | None = None, memory: str | None = None, rolling: bool = False,
                user: str = "bizcloud", gray_active: bool = False) -> ScaleOutcome:
    config = await releaser.config(service)
    running = await releaser.running(config, env)
    if running.normal is None:
        raise BizCloudError(f"{service} is not deployed in {env}", hint=f"deploy it first: bizcloud deploy "
                                                                         f"{service} --env {env}")
    if replicas is not None and gray_active:
        raise BizCloudError(f"a gray release of {service} runs in {env}: its replicas follow the ratio",
                            hint="promote or roll it back first, then scale")
    base = await releaser.base_env(env)
    before = environment_resources(config, env, base)
    after = scaled(before, replicas=replicas, cpu=cpu, memory=memory)
    outcome = ScaleOutcome(service=service, env=env)
    namespace = namespace_of(env)
    api_version, kind = WORKLOAD_API[config.type]
    plural = "deployments" if kind == "Deployment" else "statefulsets"
    workloads = f"/apis/{api_version}/namespaces/{namespace}/{plural}"
    if replicas is not None:
        outcome.replicas = (running.replicas("normal"), replicas)
        await releaser.client.patch(f"{workloads}/{workload_name(service, 'normal')}/scale",
                                    {"spec": {"replicas": replicas}})
    size = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if size:
        outcome.resources = {k: (str(getattr(before, k)), v) for k, v in size.items()}
        outcome.method, outcome.pods = await _resize(releaser, service, namespace, size, rolling=rolling)
        if outcome.method == "rolling":
            # The whole size the config now says, as the templates write it (the memory limit is
            # the request), so the template catches up with any earlier in-place resize too.
            resources = {"requests": {"cpu": after.cpu, "memory": after.memory},
                         "limits": {"memory": after.memory}}
            container = {"name": service, "resources": resources}
            patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
            for group in ("normal", "gray"):
                await releaser.client.patch(f"{workloads}/{workload_name(service, group)}", patch,
                                            content_type=STRATEGIC_MERGE_PATCH)
    moves = [f"replicas {outcome.replicas[0]}→{outcome.replicas[1]}"] if outcome.replicas else []
    moves += [f"{k} {a}→{b}" for k, (a, b) in outcome.resources.items()]
    comment = f"scale {', '.join(moves)} in {env} ({outcome.method})"
    applied = await asyncio.to_thread(releaser.configs.apply, config_text(config, env, after), author=user,
                                      comment=comment[:200])
    outcome.config_version = applied[0].version if applied else None
    params = await releaser.plan(service, env)
    outcome.rollouts = await releaser.wait(params)
    log.info(json.dumps({"msg": "scaled", **outcome.to_json()}))
    return outcome


async def _resize(releaser: Releaser, service: str, namespace: str, size: dict[str, str], *,
                  rolling: bool) -> tuple[Method, list[str]]:
    """Resize every running pod in place; ("rolling", []) when the cluster cannot (or was told not to)."""
    if rolling:
        return "rolling", []
    pods, _ = await releaser.client.list(f"/api/v1/namespaces/{namespace}/pods",
                                         label_selector=f"bizcloud.io/service={service}")
    live = [p["metadata"]["name"] for p in pods
            if not p["metadata"].get("deletionTimestamp") and p.get("status", {}).get("phase") == "Running"]
    done: list[str] = []
    for pod in live:
        if not await resize_pod(releaser.client, namespace, pod, service, cpu=size.get("cpu"),
                                memory=size.get("memory")):
            if done:  # some pods resized, this one cannot: roll them all, so every pod ends equal
                log.warning(json.dumps({"msg": "in-place resize stopped; rolling", "pod": pod}))
            return "rolling", []
        done.append(pod)
    return "in-place", done
