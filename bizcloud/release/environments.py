"""One-click environments: a service's dependency closure deployed into a new namespace.

``bizcloud env create qa1 --from dev`` makes namespace ``bc-qa1`` labelled with where it came
from, so every later render of a service in ``qa1`` takes ``dev``'s parameters unless the
service's config has its own ``resources.qa1``; it then deploys the chosen services (all that
``dev`` has parameters for, or ``--only``) and every service they consume over SOA, providers
first, each at the image it runs in ``dev``. ``env delete`` removes only environments made this
way: a namespace without the label (``dev`` itself) is refused, so no typo deletes a real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from bizcloud import identifiers
from bizcloud.configcenter.schema import ServiceConfig
from bizcloud.errors import BizCloudError
from bizcloud.kube.apply import delete_namespace, live_object, server_side_apply
from bizcloud.kube.resources import ObjectRef
from bizcloud.release.deploy import FROM_ENV_LABEL, DeployOutcome, Releaser, StepFn, no_step
from bizcloud.release.params import MANAGED_BY, namespace_of

ENVIRONMENT_MANAGER = "bizcloud-environments"


def closure(services: Mapping[str, ServiceConfig], chosen: Collection[str]) -> list[str]:
    """``chosen`` and every service they consume over SOA, transitively; providers before consumers.

    Purely computational. An interface nobody provides is left out (it may live outside
    BizCloud); a service not in ``services`` is an error naming what exists.
    """
    unknown = sorted(set(chosen) - set(services))
    if unknown:
        raise BizCloudError(f"--only: no config for {', '.join(unknown)}",
                            hint=f"configs: {', '.join(sorted(services)) or 'none'}")
    providers: dict[str, str] = {}
    for name in sorted(services):
        for interface in services[name].provides.soa:
            providers.setdefault(interface, name)
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting:
            return   # a cycle of consumers deploys in the order met; SOA clients retry anyway
        visiting.add(name)
        for dep in services[name].dependencies.soa:
            for interface in dep.interfaces:
                provider = providers.get(interface)
                if provider is not None and provider != name:
                    visit(provider)
        visiting.discard(name)
        order.append(name)

    for name in sorted(chosen):
        visit(name)
    return order


@dataclass
class EnvOutcome:
    name: str
    source: str
    namespace: str
    services: list[str]
    deploys: list[DeployOutcome] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.source, "namespace": self.namespace,
                "services": self.services, "deploys": [d.to_json() for d in self.deploys]}


async def create_environment(releaser: Releaser, name: str, source: str, *, only: Collection[str] = (),
                             on_step: StepFn = no_step) -> EnvOutcome:
    identifiers.service_name(name, "name")
    identifiers.service_name(source, "from")
    if name == source:
        raise BizCloudError(f"environment {name!r} cannot be created from itself",
                            hint="name a new environment")
    snapshot = await asyncio.to_thread(releaser.configs.latest)
    namespace = namespace_of(name)
    existing = await live_object(releaser.client, ObjectRef("v1", "Namespace", None, namespace))
    if existing is not None:
        made_from = (existing["metadata"].get("labels") or {}).get(FROM_ENV_LABEL)
        if made_from != source:
            raise BizCloudError(f"environment {name!r} exists already (namespace {namespace}"
                                + (f", created from {made_from})" if made_from else ")"),
                                hint="choose another name, or `bizcloud env delete` it first")
    in_source = {s for s, c in snapshot.services.items() if source in c.resources}
    source_base = await releaser.base_env(source)
    if source_base is not None:  # an environment made from another: the services its origin has
        in_source |= {s for s, c in snapshot.services.items() if source_base in c.resources}
    if not only and not in_source:
        raise BizCloudError(f"no service has parameters for environment {source!r}",
                            hint="check the name (`bizcloud config ls`), or name services with --only")
    services = closure(snapshot.services, only or in_source)
    on_step(f"creating namespace {namespace} from {source}: {', '.join(services)}")
    # Its own field manager: each deploy applies the Namespace too (as manager "bizcloud", without
    # this label), and server-side apply removes what a manager applied before and omits now.
    labels = {"bizcloud.io/env": name, FROM_ENV_LABEL: source_base or source,
              "app.kubernetes.io/managed-by": MANAGED_BY}
    await server_side_apply(releaser.client, [{"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": namespace, "labels": labels}}],
                            field_manager=ENVIRONMENT_MANAGER)
    outcome = EnvOutcome(name=name, source=source, namespace=namespace, services=services)
    for service in services:
        config = snapshot.services[service]
        image = (await releaser.running(config, source)).image("normal") or config.image
        on_step(f"deploying {service} ({image or 'no image'})")
        outcome.deploys.append(await releaser.deploy(service, name, image=image, wait=False, on_step=on_step))
    for service, deployed in zip(services, outcome.deploys, strict=True):
        on_step(f"waiting for {service}")
        plan = await releaser.plan(service, name)
        deployed.rollouts = await releaser.wait(plan)
    return outcome


async def delete_environment(releaser: Releaser, name: str, *, wait: bool = True,
                             timeout: float = 300.0) -> str:
    identifiers.service_name(name, "name")
    namespace = namespace_of(name)
    existing = await live_object(releaser.client, ObjectRef("v1", "Namespace", None, namespace))
    if existing is None:
        raise BizCloudError(f"environment {name!r} does not exist (no namespace {namespace})",
                            hint="list namespaces with `kubectl get ns -l bizcloud.io/from-env`")
    if not (existing["metadata"].get("labels") or {}).get(FROM_ENV_LABEL):
        raise BizCloudError(f"environment {name!r} was not created by `bizcloud env create`",
                            hint="only environments made from another are deleted this way; "
                                 f"delete namespace {namespace} with kubectl if you mean it")
    await delete_namespace(releaser.client, namespace, wait=wait, timeout=timeout)
    return namespace
