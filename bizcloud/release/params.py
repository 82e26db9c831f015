"""The typed parameters a template set renders: one service in one environment, both groups.

``params_for`` is the one place that decides what a pod gets from its service config, its
environment and the platform: BizCloud's instance labels, the downward-API variables every
BizCloud service can rely on (``POD_NAME``, ``POD_IP``, ``HOST_IP``, ``NODE_NAME``, ``SERVICE``,
``ENV``, ``GROUP``, ``VERSION``), the registry address for SOA services, and the password of each
MySQL account BizCloud grants, by reference to the Secret BizCloud keeps in the namespace, never
by value. Purely computational, so the same inputs always give the same manifests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bizcloud.authz.credentials import service_secret_name
from bizcloud.configcenter.schema import ConfigFile, Customize, Probe, Resources, ServiceConfig
from bizcloud.errors import BizCloudError
from bizcloud.monitor.instances import AUTHORIZED_GATE
from bizcloud.settings import Settings

GroupName = Literal["normal", "gray"]
NAMESPACE_PREFIX = "bc-"
MANAGED_BY = "bizcloud"
SOA_INTERFACES_ANNOTATION = "bizcloud.io/soa-interfaces"
FILES_CHECKSUM_ANNOTATION = "bizcloud.io/files-checksum"
# The content ID of an image rebuilt under the same tag: a new value rolls the pods (`make up`).
IMAGE_ID_ANNOTATION = "bizcloud.io/image-id"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")

# What every BizCloud pod can read about itself (the sample app reports these in its answers).
DOWNWARD_API = (
    ("POD_NAME", "metadata.name"),
    ("POD_IP", "status.podIP"),
    ("HOST_IP", "status.hostIP"),
    ("NODE_NAME", "spec.nodeName"),
    ("SERVICE", "metadata.labels['bizcloud.io/service']"),
    ("ENV", "metadata.labels['bizcloud.io/env']"),
    ("GROUP", "metadata.labels['bizcloud.io/group']"),
    ("VERSION", "metadata.labels['bizcloud.io/release']"),
)


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretKey(Frozen):
    name: str
    key: str


class EnvVar(Frozen):
    """One container variable: a value, a downward-API field or a Secret key (exactly one)."""

    name: str
    value: str | None = None
    field_path: str | None = None
    secret: SecretKey | None = None


class Workload(Frozen):
    """One of the service's two Deployments (or StatefulSets): normal, or gray at its own image."""

    group: GroupName
    name: str
    replicas: int = Field(ge=0)
    image: str
    release: str


class Platform(Frozen):
    """What the platform, not the service, decides: where the SOA registry is, and whether pods
    wait for their grants before they may become Ready."""

    zookeeper: str = "$(HOST_IP):2181"
    authorized_gate: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        """The configured registry, else the one on the pod's own node (``$(HOST_IP)`` is expanded
        by the kubelet from ``status.hostIP``, where the local ZooKeeper listens)."""
        return cls(zookeeper=settings.zookeeper_hosts or f"$(HOST_IP):{settings.zookeeper_port}",
                   authorized_gate=settings.release_authorized_gate)


DEFAULT_PLATFORM = Platform()


class ReleaseParams(Frozen):
    service: str
    env: str
    namespace: str
    type: Literal["stateless", "stateful"]
    ports: dict[str, int]
    command: tuple[str, ...]
    args: tuple[str, ...]
    env_vars: tuple[EnvVar, ...]
    cpu: str
    memory: str
    probe: Probe | None
    files: tuple[ConfigFile, ...]
    files_checksum: str
    annotations: dict[str, str]
    workloads: tuple[Workload, ...]
    customize: Customize
    # Pod readiness gates: ``bizcloud.io/authorized`` unless the platform turns it off (a cluster
    # whose monitor does not run authorization would never see these pods Ready).
    readiness_gates: tuple[str, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        """On every object: what `bizcloud.io/*` selectors (and pruning) find."""
        return {"app.kubernetes.io/managed-by": MANAGED_BY, "bizcloud.io/service": self.service,
                "bizcloud.io/env": self.env}

    def template_context(self) -> dict[str, Any]:
        return {**self.model_dump(), "labels": self.labels}


def namespace_of(env: str) -> str:
    return NAMESPACE_PREFIX + env


def workload_name(service: str, group: GroupName) -> str:
    return service if group == "normal" else f"{service}-gray"


def release_of(image: str) -> str:
    """The ``bizcloud.io/release`` label for an image: its tag (``demo:v2`` → ``v2``), else its digest.

    >>> release_of("registry.example:5000/team/demo:v2"), release_of("demo")
    ('v2', 'latest')
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] or ("" if digest else "latest")
    value = tag or digest.removeprefix("sha256:")[:12]
    return _LABEL_VALUE.sub("-", value)[:63].strip("-._") or "latest"


def environment_resources(config: ServiceConfig, env: str, base_env: str | None = None) -> Resources:
    """The service's parameters in ``env``: its own, else those of the environment it was made from."""
    for name in (env, base_env):
        if name is not None and name in config.resources:
            return config.resources[name]
    known = ", ".join(sorted(config.resources)) or "none"
    origin = f" nor for {base_env!r}, the environment {env!r} was created from" if base_env else ""
    raise BizCloudError(f"service {config.name!r} has no parameters for environment {env!r}{origin}",
                        hint=f"add resources.{env} to its config (it has: {known}), "
                             "or create the environment from one it has: bizcloud env create NAME --from ENV")


def _env_vars(config: ServiceConfig, resources: Resources, platform: Platform) -> tuple[EnvVar, ...]:
    out = [EnvVar(name=name, field_path=path) for name, path in DOWNWARD_API]
    if config.provides.soa or config.dependencies.soa:
        out.append(EnvVar(name="ZK_HOSTS", value=platform.zookeeper))
    if config.provides.soa:
        out.append(EnvVar(name="SOA_INTERFACES", value=",".join(config.provides.soa)))
    mysql = config.dependencies.mysql
    for dep in mysql:
        ref = SecretKey(name=service_secret_name(config.name), key=dep.user)
        out.append(EnvVar(name=f"MYSQL_PASSWORD_{dep.user.upper()}", secret=ref))
        if len(mysql) == 1:
            out.append(EnvVar(name="MYSQL_PASSWORD", secret=ref))
    platform_names = {v.name for v in out}
    user_vars = {**config.env, **resources.env}
    for name, value in user_vars.items():
        if name in platform_names:
            raise BizCloudError(f"env.{name}: BizCloud sets this variable itself",
                                hint="rename the variable; the platform's value is always given")
        out.append(EnvVar(name=name, value=value))
    return tuple(out)


def files_checksum(files: tuple[ConfigFile, ...]) -> str:
    """Changes with any mounted file, so a new file content rolls the pods (subPath mounts never refresh)."""
    blob = json.dumps([f.model_dump() for f in files], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def params_for(config: ServiceConfig, env: str, *, image: str, gray_image: str | None = None,
               replicas: tuple[int, int] | None = None, base_env: str | None = None,
               platform: Platform = DEFAULT_PLATFORM,
               pod_annotations: Mapping[str, str] | None = None) -> ReleaseParams:
    """The parameters of ``config`` in ``env``.

    ``replicas`` is (normal, gray); by default every replica is normal, as when no gray release
    runs. The gray workload always exists (at 0 replicas when idle), at ``gray_image`` or else the
    normal image, so starting a gray release is a scale, never an object's creation.
    ``pod_annotations`` go on both pod templates (a changed value rolls the pods: what `make up`
    does when it rebuilt the sample image under the same tag).
    """
    resources = environment_resources(config, env, base_env)
    normal, gray = replicas if replicas is not None else (resources.replicas, 0)
    gray_at = gray_image or image
    annotations = {SOA_INTERFACES_ANNOTATION: ",".join(config.provides.soa)} if config.provides.soa else {}
    annotations.update(pod_annotations or {})
    return ReleaseParams(
        service=config.name, env=env, namespace=namespace_of(env), type=config.type,
        ports=dict(config.ports), command=config.command, args=config.args,
        env_vars=_env_vars(config, resources, platform), cpu=resources.cpu, memory=resources.memory,
        probe=config.probe, files=config.files, files_checksum=files_checksum(config.files),
        annotations=annotations,
        workloads=(
            Workload(group="normal", name=workload_name(config.name, "normal"), replicas=normal,
                     image=image, release=release_of(image)),
            Workload(group="gray", name=workload_name(config.name, "gray"), replicas=gray,
                     image=gray_at, release=release_of(gray_at)),
        ),
        customize=config.customize,
        readiness_gates=(AUTHORIZED_GATE,) if platform.authorized_gate else (),
    )
