"""Server-side apply, diff, rollout wait, in-place resize and prune against the real cluster.

Everything happens in the module's throwaway namespace (plus namespaces this module creates and
deletes itself); Deployments run the sample image, so rollouts and resizes are real pods on the
real kubelet and containerd.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from bizcloud.kube.apply import (
    Action,
    ApplyError,
    BadManifest,
    ObjectRef,
    RolloutError,
    RolloutState,
    RolloutStatus,
    RolloutTimeout,
    UnknownKind,
    delete_namespace,
    diff,
    live_object,
    prune,
    resize_pod,
    resource_path,
    server_side_apply,
    wait_rollout,
)
from bizcloud.kube.client import KubeClient, Obj
from bizcloud.kube.errors import NotFound
from bizcloud.kube.kubectl import Kubectl
from bizcloud.kube.resize import ResizeError
from tests.e2e.conftest import demo_deployment

pytestmark = pytest.mark.e2e

LABELS = {"bizcloud.io/service": "apply-test", "bizcloud.io/env": "e2e"}


def config_map(name: str, namespace: str, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)}, "data": data}


def deployment(name: str, namespace: str, image: str, *, replicas: int = 1, **container: Any) -> Obj:
    obj: Obj = json.loads(demo_deployment(name=name, namespace=namespace, image=image, replicas=replicas))
    obj["spec"]["template"]["spec"]["containers"][0].update(container)
    return obj


def version_of(obj: Obj | None) -> str:
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


# --- apply ---------------------------------------------------------------------------------------

async def test_apply_creates_and_a_second_apply_writes_nothing(kube: KubeClient, namespace: str,
                                                               sample_image: str) -> None:
    objs = [config_map("noop", namespace, greeting="hello"),
            deployment("noop", namespace, sample_image, replicas=0)]
    first = await server_side_apply(kube, objs)
    assert [o["metadata"]["name"] for o in first] == ["noop", "noop"]
    assert all(o["metadata"].get("uid") for o in first)
    await wait_rollout(kube, ObjectRef.of(objs[1]), timeout=60)   # the controller's status writes are done
    live = [await live_object(kube, ObjectRef.of(o)) for o in objs]
    second = await server_side_apply(kube, objs)
    assert [version_of(o) for o in second] == [version_of(o) for o in live]
    assert version_of(live[0]) == version_of(first[0])
    live = await live_object(kube, ObjectRef.of(objs[1]))
    managers = {m["manager"] for m in live["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"bizcloud"}


async def test_dry_run_changes_nothing(kube: KubeClient, namespace: str) -> None:
    fresh = config_map("dry-fresh", namespace, a="1")
    [result] = await server_side_apply(kube, [fresh], dry_run=True)
    assert result["data"] == {"a": "1"}
    assert await live_object(kube, ObjectRef.of(fresh)) is None

    [stored] = await server_side_apply(kube, [config_map("dry-live", namespace, a="1")])
    [merged] = await server_side_apply(kube, [config_map("dry-live", namespace, a="2")], dry_run=True)
    assert merged["data"] == {"a": "2"}
    live = await live_object(kube, ObjectRef.of(stored))
    assert live is not None and live["data"] == {"a": "1"} and version_of(live) == version_of(stored)


async def test_dry_run_of_a_new_namespace_and_its_objects_creates_neither(kube: KubeClient) -> None:
    name = f"bc-e2e-dry-{uuid.uuid4().hex[:6]}"
    objs = [config_map("inside", name, a="1"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}]
    results = await server_side_apply(kube, objs, dry_run=True)
    assert [r["kind"] for r in results] == ["Namespace", "ConfigMap"]
    assert await live_object(kube, ObjectRef("v1", "Namespace", None, name)) is None
    changes = await diff(kube, objs)
    assert [(str(c.ref), c.action) for c in changes] == [
        (f"Namespace {name}", Action.CREATE), (f"ConfigMap {name}/inside", Action.CREATE)]


async def test_force_takes_over_fields_set_by_kubectl_apply(kube: KubeClient, kubectl: Kubectl,
                                                            namespace: str) -> None:
    kubectl.run("apply", "-f", "-", stdin=json.dumps(config_map("taken", namespace, owner="kubectl")))
    mine = config_map("taken", namespace, owner="bizcloud")
    with pytest.raises(ApplyError) as refused:
        await server_side_apply(kube, [mine], force=False)
    assert refused.value.status == 409
    assert f"ConfigMap {namespace}/taken" in refused.value.message
    assert "kubectl" in refused.value.message          # the API names the other manager
    [result] = await server_side_apply(kube, [mine])
    assert result["data"] == {"owner": "bizcloud"}
    owners = {m["manager"]: m for m in result["metadata"]["managedFields"]}
    assert "f:owner" in json.dumps(owners["bizcloud"]["fieldsV1"])


async def test_a_refused_object_is_named_with_the_api_message(kube: KubeClient, namespace: str) -> None:
    bad = config_map("Not_A_Name", namespace, a="1")
    with pytest.raises(ApplyError) as refused:
        await server_side_apply(kube, [bad])
    assert refused.value.status == 422
    assert f"ConfigMap {namespace}/Not_A_Name" in refused.value.message
    assert "RFC 1123" in refused.value.message


# --- kinds ---------------------------------------------------------------------------------------

async def test_an_unknown_kind_is_a_clear_error(kube: KubeClient, namespace: str) -> None:
    typo = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x", "namespace": namespace}}
    first = config_map("before-the-typo", namespace, a="1")
    with pytest.raises(UnknownKind) as unknown:
        await server_side_apply(kube, [first, typo])
    assert "Deploymnet" in unknown.value.message and "apps/v1" in unknown.value.message
    assert await live_object(kube, ObjectRef.of(first)) is None     # nothing of the batch was written
    assert "Deployment" in unknown.value.hint              # it lists what apps/v1 does serve
    with pytest.raises(UnknownKind) as no_group:
        await resource_path(kube, "widgets.example.com/v1", "Widget", namespace, "x")
    assert "widgets.example.com/v1" in no_group.value.message
    assert "CustomResourceDefinition" in no_group.value.hint


async def test_a_namespaced_object_without_namespace_is_refused_before_writing(kube: KubeClient,
                                                                                namespace: str) -> None:
    first = config_map("before-the-bad-one", namespace, a="1")
    homeless = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    with pytest.raises(BadManifest) as refused:
        await server_side_apply(kube, [first, homeless])
    assert refused.value.message.startswith("Deployment x: metadata.namespace is missing")
    assert await live_object(kube, ObjectRef.of(first)) is None


async def test_kinds_outside_the_table_are_found_through_discovery(kube: KubeClient, namespace: str) -> None:
    assert await resource_path(kube, "rbac.authorization.k8s.io/v1", "Role", namespace, "reader") == \
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/reader"
    assert await resource_path(kube, "rbac.authorization.k8s.io/v1", "ClusterRole", namespace, "view") == \
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/view"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reader", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    [stored] = await server_side_apply(kube, [role])
    assert stored["rules"][0]["verbs"] == ["get"]


# --- diff ----------------------------------------------------------------------------------------

async def test_diff_shows_exactly_a_changed_replica_count(kube: KubeClient, namespace: str,
                                                          sample_image: str) -> None:
    objs = [config_map("diffed", namespace, a="1"), deployment("diffed", namespace, sample_image, replicas=0)]
    await server_side_apply(kube, objs)
    unchanged = await diff(kube, objs)
    assert [c.action for c in unchanged] == [Action.UNCHANGED, Action.UNCHANGED]
    assert all(c.text == "" for c in unchanged)

    objs[1]["spec"]["replicas"] = 2
    new = config_map("diffed-new", namespace, b="2")
    changes = await diff(kube, [*objs, new])
    assert [c.action for c in changes] == [Action.UNCHANGED, Action.UPDATE, Action.CREATE]
    text = changes[1].text
    changed = [line for line in text.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-  replicas: 0", "+  replicas: 2"]
    assert text.startswith(f"--- live/Deployment {namespace}/diffed\n"
                           f"+++ merged/Deployment {namespace}/diffed")
    assert "+  b: '2'" in changes[2].text
    live = await live_object(kube, ObjectRef.of(objs[1]))
    assert live is not None and live["spec"]["replicas"] == 0       # diff changed nothing


async def test_diff_never_shows_secret_values(kube: KubeClient, namespace: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw", "namespace": namespace},
              "stringData": {"password": "s3cret-one"}}
    await server_side_apply(kube, [secret])
    secret["stringData"] = {"password": "s3cret-two"}
    [change] = await diff(kube, [secret])
    assert change.action is Action.UPDATE
    assert "*** (before)" in change.text and "*** (after)" in change.text
    assert "s3cret" not in change.text and "czNjcmV0" not in change.text   # nor their base64


# --- rollout -------------------------------------------------------------------------------------

async def test_a_rollout_is_waited_for(kube: KubeClient, namespace: str, sample_image: str) -> None:
    obj = deployment("rolled", namespace, sample_image, replicas=2)
    await server_side_apply(kube, [obj])
    seen: list[RolloutStatus] = []
    status = await wait_rollout(kube, ObjectRef.of(obj), timeout=180, on_progress=seen.append)
    assert status.state is RolloutState.COMPLETE
    assert (status.desired, status.updated, status.available) == (2, 2, 2)
    assert seen[-1] == status and len(seen) >= 2               # it saw progress, not only the end
    pods, _ = await kube.list(f"/api/v1/namespaces/{namespace}/pods", label_selector="app=rolled")
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 2


async def test_a_missing_image_fails_the_rollout_with_the_reason(kube: KubeClient, namespace: str,
                                                                 sample_image: str) -> None:
    obj = deployment("broken", namespace, "bizcloud.local/missing:never", imagePullPolicy="Never")
    obj["spec"]["progressDeadlineSeconds"] = 10
    await server_side_apply(kube, [obj])
    started = time.monotonic()
    with pytest.raises(RolloutError) as failed:
        await wait_rollout(kube, ObjectRef.of(obj), timeout=120)
    assert time.monotonic() - started < 60
    assert failed.value.status is not None and failed.value.status.state is RolloutState.FAILED
    message = failed.value.message
    assert f"Deployment {namespace}/broken" in message
    assert "progress deadline" in message
    assert "ErrImageNeverPull" in message and "bizcloud.local/missing:never" in message


async def test_a_rollout_that_never_becomes_ready_times_out_naming_the_pods(
        kube: KubeClient, namespace: str, sample_image: str) -> None:
    probe = {"tcpSocket": {"port": 9}, "periodSeconds": 1}        # nothing listens there
    obj = deployment("unready", namespace, sample_image, readinessProbe=probe)
    await server_side_apply(kube, [obj])
    started = time.monotonic()
    with pytest.raises(RolloutTimeout) as late:
        await wait_rollout(kube, ObjectRef.of(obj), timeout=8)
    assert 8 <= time.monotonic() - started < 20
    message = late.value.message
    assert message.startswith(f"rollout of Deployment {namespace}/unready not finished after 8s: "
                              "0 of 1 updated replicas are available")
    assert "ContainersNotReady" in message


# --- resize --------------------------------------------------------------------------------------

async def test_resize_in_place_keeps_the_pod_and_changes_its_resources(
        kube: KubeClient, kubectl: Kubectl, namespace: str, sample_image: str) -> None:
    obj = deployment("resized", namespace, sample_image, resources={
        "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}})
    await server_side_apply(kube, [obj])
    await wait_rollout(kube, ObjectRef.of(obj), timeout=120)
    pods, _ = await kube.list(f"/api/v1/namespaces/{namespace}/pods", label_selector="app=resized")
    [before] = pods
    name = before["metadata"]["name"]

    assert await resize_pod(kube, namespace, name, "app", cpu="150m", memory="96Mi") is True

    after = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    [status] = after["status"]["containerStatuses"]
    assert status["restartCount"] == 0
    assert status["containerID"] == before["status"]["containerStatuses"][0]["containerID"]
    assert status["resources"] == {"requests": {"cpu": "150m", "memory": "96Mi"},
                                   "limits": {"cpu": "300m", "memory": "192Mi"}}   # limits keep their ratio
    cgroup = kubectl.run("exec", "-n", namespace, name, "--", "cat",
                         "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                         "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").stdout.split()
    assert cgroup == [str(192 * 2**20), "30000"]          # the running container's cgroup changed

    with pytest.raises(ResizeError) as refused:
        await resize_pod(kube, namespace, name, "app", cpu="100")
    assert refused.value.reason == "Infeasible"
    assert f"pod {namespace}/{name}" in refused.value.message and "capacity" in refused.value.message


async def test_resize_of_a_best_effort_pod_asks_for_a_rolling_update(kube: KubeClient, namespace: str,
                                                                     sample_image: str) -> None:
    obj = deployment("besteffort", namespace, sample_image)
    await server_side_apply(kube, [obj])
    await wait_rollout(kube, ObjectRef.of(obj), timeout=120)
    pods, _ = await kube.list(f"/api/v1/namespaces/{namespace}/pods", label_selector="app=besteffort")
    assert await resize_pod(kube, namespace, pods[0]["metadata"]["name"], "app", cpu="200m") is False


# --- prune and namespaces ------------------------------------------------------------------------

async def test_prune_removes_what_a_new_render_dropped(kube: KubeClient, namespace: str) -> None:
    kept, dropped = config_map("kept", namespace, a="1"), config_map("dropped", namespace, a="1")
    for obj in (kept, dropped):
        obj["metadata"]["labels"] = {"bizcloud.io/service": "pruned"}
    other = config_map("other-service", namespace, a="1")       # labelled apply-test
    await server_side_apply(kube, [kept, dropped, other])
    deleted = await prune(kube, namespace, "bizcloud.io/service=pruned", {ObjectRef.of(kept)},
                          [("v1", "ConfigMap")])
    assert deleted == [ObjectRef.of(dropped)]
    assert await live_object(kube, ObjectRef.of(dropped)) is None
    assert await live_object(kube, ObjectRef.of(kept)) is not None
    assert await live_object(kube, ObjectRef.of(other)) is not None
    assert await prune(kube, namespace, "bizcloud.io/service=pruned", {ObjectRef.of(kept)},
                       [("v1", "ConfigMap")]) == []


async def test_delete_namespace_waits_until_it_is_gone(kube: KubeClient) -> None:
    name = f"bc-e2e-del-{uuid.uuid4().hex[:6]}"
    await server_side_apply(kube, [config_map("inside", name, a="1"),
                                   {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    await delete_namespace(kube, name, wait=True, timeout=120)
    with pytest.raises(NotFound):
        await kube.get(f"/api/v1/namespaces/{name}")
    await delete_namespace(kube, name, wait=True, timeout=10)    # already gone: nothing to do
