"""One-click deploy: render → server-side dry-run → diff → server-side apply → prune → rollout.

``Releaser`` is the I/O side of a release for one cluster: it reads the service's config from
the config center, finds what runs now (the image of the normal workload, a gray release's
replicas), renders, and writes with ``bizcloud.kube.apply`` as field manager ``bizcloud``. The
dry-run comes first so an object the API server refuses (a bad quantity the schema let through,
an admission webhook) stops the deploy before anything is written; the environment's namespace
and the service's password Secret come next, so pods never start without the Secret they read.

What a deploy keeps from the running release, so ``bizcloud deploy`` is safe to repeat:
- the image, unless ``image`` is given (then the config's ``image``, for a first deploy);
- a gray release in progress: its image and both replica counts (the gray controller owns them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bizcloud.authz.credentials import KubeCredentials
from bizcloud.configcenter.schema import ServiceConfig
from bizcloud.configcenter.store import ConfigStore
from bizcloud.errors import BizCloudError
from bizcloud.kube.apply import diff as diff_objects
from bizcloud.kube.apply import live_object, prune, server_side_apply
from bizcloud.kube.client import KubeClient, Obj
from bizcloud.kube.objectdiff import Action, ObjectDiff
from bizcloud.kube.resources import ObjectRef
from bizcloud.kube.rollout import RolloutStatus, wait_rollout
from bizcloud.release.params import (
    DEFAULT_PLATFORM,
    IMAGE_ID_ANNOTATION,
    MANAGED_BY,
    GroupName,
    Platform,
    ReleaseParams,
    namespace_of,
    params_for,
    workload_name,
)
from bizcloud.release.render import Manifest, Renderer

log = logging.getLogger("bizcloud.release")

FROM_ENV_LABEL = "bizcloud.io/from-env"
WORKLOAD_API = {"stateless": ("apps/v1", "Deployment"), "stateful": ("apps/v1", "StatefulSet")}
StepFn = Callable[[str], None]
RolloutFn = Callable[[str, RolloutStatus], None]


def no_step(_: str) -> None:
    return None


def no_rollout(_: str, __: RolloutStatus) -> None:
    return None


@dataclass(frozen=True)
class Running:
    """What runs now of one service in one environment (None: nothing applied yet)."""

    normal: Obj | None
    gray: Obj | None

    def image(self, group: GroupName) -> str | None:
        obj = self.normal if group == "normal" else self.gray
        if obj is None:
            return None
        containers = obj["spec"]["template"]["spec"].get("containers") or []
        return str(containers[0]["image"]) if containers else None

    def pod_annotation(self, name: str) -> str | None:
        if self.normal is None:
            return None
        value = (self.normal["spec"]["template"]["metadata"].get("annotations") or {}).get(name)
        return str(value) if value is not None else None

    def replicas(self, group: GroupName) -> int:
        obj = self.normal if group == "normal" else self.gray
        return int(obj["spec"].get("replicas") or 0) if obj else 0


@dataclass
class DeployOutcome:
    service: str
    env: str
    namespace: str
    image: str
    release: str
    dry_run: bool
    diffs: list[ObjectDiff] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    rollouts: dict[str, RolloutStatus] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(d.action is not Action.UNCHANGED for d in self.diffs) or bool(self.pruned)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "env": self.env, "namespace": self.namespace, "image": self.image,
            "release": self.release, "dry_run": self.dry_run, "changed": self.changed,
            "diffs": [{"object": str(d.ref), "action": d.action.value, "diff": d.text} for d in self.diffs],
            "applied": self.applied, "pruned": self.pruned,
            "rollouts": {name: {"state": s.state.value, "message": s.message, "desired": s.desired,
                                "updated": s.updated, "ready": s.ready} for name, s in self.rollouts.items()},
        }


def selector(service: str, env: str) -> str:
    """The labels every object of one service's release carries (what prune looks for)."""
    return f"app.kubernetes.io/managed-by={MANAGED_BY},bizcloud.io/service={service},bizcloud.io/env={env}"


class Releaser:
    """Deploys services of the config center into one cluster. Share one per process."""

    def __init__(self, client: KubeClient, configs: ConfigStore, *, platform: Platform = DEFAULT_PLATFORM,
                 renderer: Renderer | None = None, rollout_timeout: float = 300.0) -> None:
        self.client = client
        self.configs = configs
        self.platform = platform
        self.renderer = renderer or Renderer()
        self.rollout_timeout = rollout_timeout
        self.credentials = KubeCredentials(client)

    # --- reading -----------------------------------------------------------------------------

    async def config(self, service: str) -> ServiceConfig:
        snapshot = await asyncio.to_thread(self.configs.latest)
        config = snapshot.services.get(service)
        if config is None:
            known = ", ".join(sorted(snapshot.services)) or "none"
            raise BizCloudError(f"service {service!r} has no config in the config center",
                                hint=f"apply one with `bizcloud config apply FILE` (configs: {known})")
        return config

    async def base_env(self, env: str) -> str | None:
        """The environment ``env`` was created from (``bizcloud env create``), read off its namespace."""
        namespace = await live_object(self.client, ObjectRef("v1", "Namespace", None, namespace_of(env)))
        if namespace is None:
            return None
        value = (namespace["metadata"].get("labels") or {}).get(FROM_ENV_LABEL)
        return str(value) if value else None

    async def running(self, config: ServiceConfig, env: str) -> Running:
        api_version, kind = WORKLOAD_API[config.type]
        namespace = namespace_of(env)
        normal, gray = await asyncio.gather(*(
            live_object(self.client, ObjectRef(api_version, kind, namespace, workload_name(config.name, g)))
            for g in ("normal", "gray")))
        return Running(normal=normal, gray=gray)

    async def plan(self, service: str, env: str, *, image: str | None = None,
                   gray: tuple[str, int, int] | None = None,
                   pod_annotations: dict[str, str] | None = None) -> ReleaseParams:
        """The parameters of the next render. ``gray`` = (image, normal, gray replicas) overrides
        what runs (the gray controller's moves); otherwise a running gray release is kept."""
        config = await self.config(service)
        base, running = await asyncio.gather(self.base_env(env), self.running(config, env))
        chosen = image or running.image("normal") or config.image
        image_id = running.pod_annotation(IMAGE_ID_ANNOTATION)
        if pod_annotations is None and image_id is not None and chosen == running.image("normal"):
            pod_annotations = {IMAGE_ID_ANNOTATION: image_id}  # the same image: no restart
        if chosen is None:
            raise BizCloudError(f"no image to deploy {service} with: nothing runs in {env} and its config "
                                "names no image", hint="give --image, or add `image:` to its config")
        if gray is not None:
            gray_image, normal, gray_count = gray
            return params_for(config, env, image=chosen, gray_image=gray_image, replicas=(normal, gray_count),
                              base_env=base, platform=self.platform,
                              pod_annotations=pod_annotations)
        if running.replicas("gray") > 0:
            return params_for(config, env, image=chosen, gray_image=running.image("gray"),
                              replicas=(running.replicas("normal"), running.replicas("gray")),
                              base_env=base, platform=self.platform,
                              pod_annotations=pod_annotations)
        return params_for(config, env, image=chosen, base_env=base, platform=self.platform,
                          pod_annotations=pod_annotations)

    async def render(self, service: str, env: str, *, image: str | None = None) -> list[Manifest]:
        return self.renderer.render(await self.plan(service, env, image=image))

    # --- writing -----------------------------------------------------------------------------

    async def deploy(self, service: str, env: str, *, image: str | None = None, dry_run: bool = False,
                     show_diff: bool = False, wait: bool = True, on_step: StepFn = no_step,
                     on_rollout: RolloutFn = no_rollout, gray: tuple[str, int, int] | None = None,
                     pod_annotations: dict[str, str] | None = None) -> DeployOutcome:
        on_step(f"rendering {service} for {env}")
        params = await self.plan(service, env, image=image, gray=gray, pod_annotations=pod_annotations)
        docs = self.renderer.render(params)
        normal = params.workloads[0]
        outcome = DeployOutcome(service=service, env=env, namespace=params.namespace, image=normal.image,
                                release=normal.release, dry_run=dry_run)
        on_step("server-side dry-run")
        await server_side_apply(self.client, docs, dry_run=True)
        if dry_run or show_diff:
            on_step("diff against the live objects")
            outcome.diffs = await diff_objects(self.client, docs)
        if dry_run:
            return outcome
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        rest = [d for d in docs if d["kind"] != "Namespace"]
        on_step(f"applying {len(docs)} objects (field manager bizcloud)")
        await server_side_apply(self.client, namespaces)
        config = await self.config(service)
        for dep in config.dependencies.mysql:
            await self.credentials.ensure(service, env, dep.user)
        applied = await server_side_apply(self.client, rest)
        outcome.applied = [str(ObjectRef.of(o)) for o in namespaces + applied]
        keep = {ObjectRef.of(d) for d in docs}
        pruned = await prune(self.client, params.namespace, selector(service, env), keep)
        outcome.pruned = [str(ref) for ref in pruned]
        log.info(json.dumps({"msg": "deployed", "service": service, "env": env, "image": normal.image,
                             "applied": len(applied), "pruned": outcome.pruned}))
        if wait:
            outcome.rollouts = await self.wait(params, on_step=on_step, on_rollout=on_rollout)
        return outcome

    async def wait(self, params: ReleaseParams, *, on_step: StepFn = no_step,
                   on_rollout: RolloutFn = no_rollout) -> dict[str, RolloutStatus]:
        api_version, kind = WORKLOAD_API[params.type]
        on_step("waiting for the rollout")

        async def one(name: str) -> tuple[str, RolloutStatus]:
            ref = ObjectRef(api_version, kind, params.namespace, name)
            status = await wait_rollout(self.client, ref, timeout=self.rollout_timeout,
                                        on_progress=lambda s: on_rollout(name, s))
            return name, status

        return dict(await asyncio.gather(*(one(w.name) for w in params.workloads)))
