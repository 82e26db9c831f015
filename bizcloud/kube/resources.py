"""Which URL an object lives at: ``ObjectRef`` and the (apiVersion, kind) -> REST path resolution.

The release side renders manifests (dicts with ``apiVersion``, ``kind`` and ``metadata``) and
hands them to ``bizcloud.kube.apply``; this module turns each into the API server path that apply,
diff, prune and the rollout wait address. The kinds BizCloud's templates produce are in a
built-in table, so the common path costs no request; any other kind (a service's extra manifests:
an Ingress, a CRD's objects) is found through API discovery (``/api/v1``, ``/apis/GROUP/VERSION``),
fetched once per client and group-version and fetched again once on a miss, so a CRD installed a
moment ago is found too.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from bizcloud.errors import KubeError
from bizcloud.kube.client import KubeClient, Obj
from bizcloud.kube.errors import NotFound


class UnknownKind(KubeError):  # noqa: N818 - reads as the condition, like NotFound
    """The cluster serves no such kind under that apiVersion."""


class BadManifest(KubeError):  # noqa: N818 - reads as the condition, like NotFound
    """A manifest lacks a field every Kubernetes object needs."""


@dataclass(frozen=True)
class Resource:
    """How the API serves one kind: its plural (the URL segment) and whether it is namespaced."""

    plural: str
    namespaced: bool


@dataclass(frozen=True)
class ObjectRef:
    """One object's identity, as kubectl names it: ``Deployment bc-dev/demo-web``."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Obj) -> ObjectRef:
        """The reference of a manifest or a live object; a missing field is a ``BadManifest``."""
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        api_version, kind, name = obj.get("apiVersion"), obj.get("kind"), metadata.get("name")
        for field, value in (("apiVersion", api_version), ("kind", kind), ("metadata.name", name)):
            if not isinstance(value, str) or not value:
                shown = f"{kind} {name}" if kind or name else "a manifest"
                raise BadManifest(f"{shown}: {field} is missing or not a string",
                                  hint=f"set {field} (every Kubernetes object needs apiVersion, kind and "
                                       "metadata.name)")
        namespace = metadata.get("namespace") or None
        return cls(str(api_version), str(kind), namespace, str(name))

    @property
    def group(self) -> str:
        """The API group (``""`` for the core group), the part of apiVersion that names the kind."""
        return self.api_version.rpartition("/")[0]

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        """Identity across API versions: ``autoscaling/v1`` and ``autoscaling/v2`` name one HPA."""
        return self.group, self.kind, self.namespace, self.name

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


# The kinds the templates produce (plus Pod, which resize addresses): no discovery request needed.
BUILTIN: dict[tuple[str, str], Resource] = {
    ("v1", "Namespace"): Resource("namespaces", namespaced=False),
    ("v1", "ConfigMap"): Resource("configmaps", namespaced=True),
    ("v1", "Secret"): Resource("secrets", namespaced=True),
    ("v1", "Service"): Resource("services", namespaced=True),
    ("v1", "ServiceAccount"): Resource("serviceaccounts", namespaced=True),
    ("v1", "Pod"): Resource("pods", namespaced=True),
    ("apps/v1", "Deployment"): Resource("deployments", namespaced=True),
    ("apps/v1", "StatefulSet"): Resource("statefulsets", namespaced=True),
    ("policy/v1", "PodDisruptionBudget"): Resource("poddisruptionbudgets", namespaced=True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): Resource("horizontalpodautoscalers", namespaced=True),
}

# Discovery answers per client (weakly held: a closed client takes its cache with it).
_discovered: weakref.WeakKeyDictionary[KubeClient, dict[str, dict[str, Resource]]] = \
    weakref.WeakKeyDictionary()


def group_version_path(api_version: str) -> str:
    """``v1`` -> ``/api/v1``, ``apps/v1`` -> ``/apis/apps/v1``. Purely computational."""
    return f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"


def build_path(api_version: str, resource: Resource, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a collection (``name=None``) or of one object. Purely computational.

    A namespaced kind without a namespace is the collection across all namespaces; a namespace
    given for a cluster-scoped kind is ignored, as kubectl does.
    """
    path = group_version_path(api_version)
    if resource.namespaced and namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{resource.plural}"
    return f"{path}/{name}" if name else path


def parse_discovery(body: Any) -> dict[str, Resource]:
    """kind -> Resource from an ``APIResourceList``, subresources (``pods/log``) left out.

    Purely computational.
    """
    found: dict[str, Resource] = {}
    for item in (body or {}).get("resources") or []:
        name, kind = item.get("name", ""), item.get("kind", "")
        if name and kind and "/" not in name:
            found.setdefault(kind, Resource(name, namespaced=bool(item.get("namespaced"))))
    return found


async def lookup(client: KubeClient, api_version: str, kind: str) -> Resource:
    """The Resource for a kind: the built-in table, then discovery (refreshed once on a miss)."""
    builtin = BUILTIN.get((api_version, kind))
    if builtin:
        return builtin
    cache = _discovered.setdefault(client, {})
    for fresh in (False, True):
        if fresh or api_version not in cache:
            try:
                cache[api_version] = parse_discovery(await client.get(group_version_path(api_version)))
            except NotFound as e:
                raise UnknownKind(
                    f"{kind} (apiVersion {api_version}): the cluster serves no API {api_version}",
                    hint="check the manifest's apiVersion (`kubectl api-versions` lists what the cluster "
                         "serves) or install the CustomResourceDefinition that provides it") from e
        if kind in cache[api_version]:
            return cache[api_version][kind]
    served = ", ".join(sorted(cache[api_version])) or "nothing"
    raise UnknownKind(f"{kind} (apiVersion {api_version}): no such kind in {api_version}",
                      hint=f"check the spelling of kind (case matters); {api_version} serves: {served}")


async def resource_path(client: KubeClient, api_version: str, kind: str, namespace: str | None,
                        name: str | None = None) -> str:
    """The REST path of an object (or of its collection when ``name`` is None)."""
    return build_path(api_version, await lookup(client, api_version, kind), namespace, name)


async def object_path(client: KubeClient, ref: ObjectRef) -> str:
    """The REST path of the object ``ref`` names; a namespaced kind without namespace is refused."""
    resource = await lookup(client, ref.api_version, ref.kind)
    if resource.namespaced and not ref.namespace:
        raise BadManifest(f"{ref}: metadata.namespace is missing for a namespaced kind",
                          hint="set metadata.namespace (BizCloud's environments live in bc-<env>)")
    return build_path(ref.api_version, resource, ref.namespace, ref.name)


__all__ = ["BUILTIN", "BadManifest", "ObjectRef", "Resource", "UnknownKind", "build_path", "lookup",
           "object_path", "parse_discovery", "resource_path"]
