"""Writing rendered manifests to the cluster: server-side apply, diff, prune, namespace deletion.

The Kubernetes side of a deploy (``bizcloud.release`` renders, this module writes):
render -> ``server_side_apply(dry_run=True)`` -> ``diff`` -> ``server_side_apply`` ->
``wait_rollout``; one-click scale up/down tries ``resize_pod`` first; a re-render that no longer
produces an object is followed by ``prune``; ``env delete`` is ``delete_namespace``.

Server-side apply (``application/apply-patch+yaml``, ``fieldManager=bizcloud``) is used rather
than create-or-update because the API server then merges exactly the fields we declare and
records that we own them: applying the same manifest twice writes nothing (same
resourceVersion), fields other managers own (the HPA's replicas, a human's ``kubectl
annotate``) survive, and ``force`` takes over fields another manager set before (a
``kubectl apply`` by hand) instead of failing with a conflict. A JSON body is valid YAML, so the
patch is the manifest's JSON.

This module is the facade: the parts live in ``resources`` (paths and discovery),
``objectdiff`` (pure normalization and diff text), ``rollout``, ``resize`` and ``follow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

from bizcloud.errors import KubeError
from bizcloud.kube.client import KubeClient, Obj, Objs
from bizcloud.kube.errors import KubeApiError, NotFound
from bizcloud.kube.follow import follow
from bizcloud.kube.objectdiff import Action, ObjectDiff, normalize, object_diff
from bizcloud.kube.resize import ResizeError, resize_pod
from bizcloud.kube.resources import (
    BUILTIN,
    BadManifest,
    ObjectRef,
    UnknownKind,
    build_path,
    lookup,
    object_path,
    resource_path,
)
from bizcloud.kube.rollout import (
    RolloutError,
    RolloutState,
    RolloutStatus,
    RolloutTimeout,
    rollout_status,
    wait_rollout,
)

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "bizcloud"
DIFF_CONCURRENCY = 8
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# What a render of the templates produces, namespaced; the default kinds ``prune`` looks at.
PRUNABLE_KINDS: tuple[tuple[str, str], ...] = tuple(
    key for key, resource in BUILTIN.items() if resource.namespaced and key[1] != "Pod")

_HINTS = {
    400: "the manifest is not a valid object; check it with `bizcloud render`",
    403: "BizCloud's credentials may not write this kind here; check the cluster's RBAC",
    404: "create its namespace first (apply the Namespace in the same batch)",
    409: "another field manager owns these fields: apply with force, or stop setting them",
    422: "fix the field the message names in the template or the environment's parameters",
}


class ApplyError(KubeError):
    """The API server refused one object; ``ref`` names it, ``status`` is the HTTP status."""

    def __init__(self, ref: ObjectRef, error: KubeApiError, *, verb: str = "apply") -> None:
        super().__init__(f"{verb} {ref}: {error.api_message or error}",
                         hint=_HINTS.get(error.status, "see the API server's message"))
        self.ref = ref
        self.status = error.status


def namespaces_first(objs: Iterable[Obj]) -> list[Obj]:
    """Namespaces, then everything else in the given order (the sort is stable). Pure."""
    return sorted(objs, key=lambda obj: obj.get("kind") != "Namespace")


async def apply_one(client: KubeClient, obj: Obj, *, dry_run: bool = False, force: bool = True,
                    field_manager: str = FIELD_MANAGER, path: str | None = None) -> Obj:
    """Server-side apply of one manifest; the object as the server stored (or would store) it.

    ``path`` is the object's REST path when the caller resolved it already.
    """
    ref = ObjectRef.of(obj)
    query: dict[str, str] = {"fieldManager": field_manager, "force": "true" if force else "false"}
    if dry_run:
        query["dryRun"] = "All"
    try:
        return await client.patch(f"{path or await object_path(client, ref)}?{urlencode(query)}", obj,
                                  content_type=APPLY_PATCH)
    except KubeApiError as e:
        raise ApplyError(ref, e, verb="dry-run apply" if dry_run else "apply") from e


async def server_side_apply(client: KubeClient, objs: Sequence[Obj], *, dry_run: bool = False,
                            force: bool = True, field_manager: str = FIELD_MANAGER) -> Objs:
    """Apply the manifests, Namespaces first, one after the other; what the server returned.

    Every manifest is checked and its kind resolved before anything is written, so a malformed
    manifest or an unknown kind anywhere in the batch changes nothing. After that it stops at the
    first refusal (``ApplyError`` naming the object and the API's message); the objects before
    it are applied. With ``dry_run`` the server validates, defaults and merges but stores
    nothing, except that an object in a namespace this same batch creates cannot be dry-run (the
    namespace does not exist yet: the API answers 404), so it comes back as given.
    """
    batch = await _Batch.resolve(client, objs)
    results: Objs = []
    for obj, path in batch.items:
        results.append(await batch.apply(obj, path, dry_run=dry_run, force=force,
                                         field_manager=field_manager))
        log.info("applied object=%r dry_run=%s", str(ObjectRef.of(obj)), dry_run)
    return results


class _Batch:
    """Manifests in apply order with their resolved paths and the namespaces they create."""

    def __init__(self, client: KubeClient, items: list[tuple[Obj, str]]) -> None:
        self.client = client
        self.items = items
        self.created = {ObjectRef.of(o).name for o, _ in items if o.get("kind") == "Namespace"}

    @classmethod
    async def resolve(cls, client: KubeClient, objs: Sequence[Obj]) -> _Batch:
        ordered = namespaces_first(objs)
        return cls(client, [(obj, await object_path(client, ObjectRef.of(obj))) for obj in ordered])

    async def apply(self, obj: Obj, path: str, *, dry_run: bool, force: bool = True,
                    field_manager: str = FIELD_MANAGER) -> Obj:
        try:
            return await apply_one(self.client, obj, dry_run=dry_run, force=force,
                                   field_manager=field_manager, path=path)
        except ApplyError as e:
            if not (dry_run and e.status == 404 and e.ref.namespace in self.created
                    and not await _exists(self.client, f"/api/v1/namespaces/{e.ref.namespace}")):
                raise
            return obj      # its namespace comes with the batch: nothing to dry-run against


async def _exists(client: KubeClient, path: str) -> bool:
    return await _get_or_none(client, path) is not None


async def _get_or_none(client: KubeClient, path: str) -> Obj | None:
    try:
        return await client.get(path)
    except NotFound:
        return None


async def live_object(client: KubeClient, ref: ObjectRef) -> Obj | None:
    """The object as it is in the cluster, or None."""
    return await _get_or_none(client, await object_path(client, ref))


async def diff(client: KubeClient, objs: Sequence[Obj], *, concurrency: int = DIFF_CONCURRENCY
               ) -> list[ObjectDiff]:
    """What applying ``objs`` would change, per object in apply order (create, update or
    unchanged) with a ``kubectl diff``-like text; the cluster is not changed (server-side
    dry-run). Objects are diffed ``concurrency`` at a time: nothing is written, so order does not
    matter, and a service's dozen objects cost about one round trip instead of two dozen."""
    batch = await _Batch.resolve(client, objs)
    limit = asyncio.Semaphore(concurrency)

    async def one(obj: Obj, path: str) -> ObjectDiff:
        async with limit:
            live = await _get_or_none(client, path)
            return object_diff(live, await batch.apply(obj, path, dry_run=True))

    tasks = [asyncio.ensure_future(one(obj, path)) for obj, path in batch.items]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def prune(client: KubeClient, namespace: str, selector: str, keep: set[ObjectRef],
                kinds: Iterable[tuple[str, str]] = PRUNABLE_KINDS) -> list[ObjectRef]:
    """Delete what a new render no longer produces: objects of ``kinds`` ((apiVersion, kind)) in
    ``namespace`` matching the label ``selector`` and not in ``keep``. Returns what was deleted.

    Objects are matched across API versions (an HPA kept as ``autoscaling/v2`` is not pruned when
    listed as ``autoscaling/v1``). Objects a controller owns (``ownerReferences`` with
    ``controller: true``) and objects already being deleted are left alone: their owner decides.
    """
    if not selector.strip():
        raise KubeError(f"prune in {namespace}: an empty label selector would match every object",
                        hint="pass the release's selector, e.g. bizcloud.io/service=demo-web")
    kept = {ref.key for ref in keep}
    deleted: list[ObjectRef] = []
    for api_version, kind in kinds:
        resource = await lookup(client, api_version, kind)
        items, _ = await client.list(build_path(api_version, resource, namespace), label_selector=selector)
        for item in items:
            metadata = item["metadata"]
            ref = ObjectRef(api_version, kind, metadata.get("namespace"), metadata["name"])
            owned = any(o.get("controller") for o in metadata.get("ownerReferences") or [])
            if ref.key in kept or owned or metadata.get("deletionTimestamp"):
                continue
            try:
                await client.delete(build_path(api_version, resource, namespace, ref.name),
                                     params={"propagationPolicy": "Background"})
            except NotFound:
                continue    # someone else deleted it first
            except KubeApiError as e:
                raise ApplyError(ref, e, verb="prune") from e
            log.info("pruned object=%r selector=%r", str(ref), selector)
            deleted.append(ref)
    return deleted


async def delete_namespace(client: KubeClient, name: str, *, wait: bool, timeout: float = 300.0) -> None:
    """Delete a namespace (and so everything in it); with ``wait``, until it is gone.

    Deleting a namespace that does not exist is not an error. The system namespaces are refused.
    A wait that times out names what still holds the namespace (its status conditions).
    """
    if name in PROTECTED_NAMESPACES:
        raise KubeError(f"namespace {name} is a system namespace", hint="delete a bc-<env> namespace")
    path = f"/api/v1/namespaces/{name}"
    try:
        await client.delete(path, params={"propagationPolicy": "Background"})
    except NotFound:
        return
    except KubeApiError as e:
        raise ApplyError(ObjectRef("v1", "Namespace", None, name), e, verb="delete") from e
    if not wait:
        return
    last: Obj = {}
    versions = follow(client, "/api/v1/namespaces", name)
    try:
        async with asyncio.timeout(timeout), contextlib.aclosing(versions):
            async for obj in versions:
                if obj is None:
                    return
                last = obj
    except TimeoutError as e:
        holding = [str(c.get("message")) for c in (last.get("status") or {}).get("conditions") or []
                   if c.get("status") == "True" and c.get("message")]
        raise KubeError(f"namespace {name} still terminating after {timeout:.0f}s"
                        + "".join(f"; {h}" for h in holding),
                        hint=f"look at what is left (`kubectl get all -n {name}`) and its finalizers") from e


__all__ = ["APPLY_PATCH", "FIELD_MANAGER", "PRUNABLE_KINDS", "Action", "ApplyError", "BadManifest",
           "ObjectDiff", "ObjectRef", "ResizeError", "RolloutError", "RolloutState", "RolloutStatus",
           "RolloutTimeout", "UnknownKind", "apply_one", "delete_namespace", "diff", "live_object",
           "namespaces_first", "normalize", "prune", "resize_pod", "resource_path", "rollout_status",
           "server_side_apply", "wait_rollout"]
