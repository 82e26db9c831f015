"""The pure parts of apply: references and paths, normalization and diff text, rollout rules,
quantities and resize plans. No cluster; the real-cluster behaviour is in tests/e2e/test_apply.py."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from bizcloud.errors import BizCloudError
from bizcloud.kube import apply, quantity
from bizcloud.kube.objectdiff import Action, decide, normalize, object_diff
from bizcloud.kube.resize import applied, desired_resources, refusal, resize_patch
from bizcloud.kube.resources import BUILTIN, BadManifest, ObjectRef, Resource, build_path, parse_discovery
from bizcloud.kube.rollout import RolloutState, pod_problems, rollout_status, selector_string

Obj = dict[str, Any]


def test_the_public_surface_is_pinned() -> None:
    """What the release side imports from ``bizcloud.kube.apply``: renaming any of it breaks them."""
    assert {"ObjectRef", "resource_path", "server_side_apply", "diff", "normalize", "rollout_status",
            "wait_rollout", "resize_pod", "prune", "delete_namespace", "live_object", "ObjectDiff",
            "RolloutStatus", "ApplyError", "UnknownKind"} <= set(apply.__all__)
    assert all(hasattr(apply, name) for name in apply.__all__)


# --- ObjectRef and paths ---------------------------------------------------------------------------

def test_object_ref_names_objects_as_kubectl_does() -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "demo-web", "namespace": "bc-dev"}}
    ref = ObjectRef.of(deploy)
    assert ref == ObjectRef("apps/v1", "Deployment", "bc-dev", "demo-web")
    assert str(ref) == "Deployment bc-dev/demo-web"
    assert str(ObjectRef.of({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bc-dev"}})) \
        == "Namespace bc-dev"
    assert ref.group == "apps" and ObjectRef("v1", "Pod", "x", "p").group == ""


def test_refs_match_across_api_versions_of_one_group() -> None:
    v1 = ObjectRef("autoscaling/v1", "HorizontalPodAutoscaler", "bc-dev", "web")
    v2 = ObjectRef("autoscaling/v2", "HorizontalPodAutoscaler", "bc-dev", "web")
    assert v1 != v2 and v1.key == v2.key


@pytest.mark.parametrize(("manifest", "field"), [
    ({"kind": "ConfigMap", "metadata": {"name": "x"}}, "apiVersion"),
    ({"apiVersion": "v1", "metadata": {"name": "x"}}, "kind"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "metadata.name"),
    ({"apiVersion": "v1", "kind": "ConfigMap"}, "metadata.name"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 3}}, "metadata.name"),
], ids=["no-apiVersion", "no-kind", "no-name", "no-metadata", "name-not-string"])
def test_a_manifest_without_identity_is_refused_naming_the_field(manifest: Obj, field: str) -> None:
    with pytest.raises(BadManifest) as refused:
        ObjectRef.of(manifest)
    assert field in refused.value.message and field in refused.value.hint


@pytest.mark.parametrize(("api_version", "kind", "namespace", "name", "path"), [
    ("v1", "ConfigMap", "bc-dev", "cfg", "/api/v1/namespaces/bc-dev/configmaps/cfg"),
    ("v1", "ConfigMap", "bc-dev", None, "/api/v1/namespaces/bc-dev/configmaps"),
    ("v1", "ConfigMap", None, None, "/api/v1/configmaps"),
    ("v1", "Namespace", None, "bc-dev", "/api/v1/namespaces/bc-dev"),
    ("v1", "Namespace", "ignored", "bc-dev", "/api/v1/namespaces/bc-dev"),
    ("apps/v1", "Deployment", "bc-dev", "web", "/apis/apps/v1/namespaces/bc-dev/deployments/web"),
    ("policy/v1", "PodDisruptionBudget", "bc-dev", "web",
     "/apis/policy/v1/namespaces/bc-dev/poddisruptionbudgets/web"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "bc-dev", "web",
     "/apis/autoscaling/v2/namespaces/bc-dev/horizontalpodautoscalers/web"),
], ids=["namespaced", "collection", "all-namespaces", "cluster-scoped", "cluster-scoped-ns-ignored",
        "group", "pdb", "hpa"])
def test_builtin_paths(api_version: str, kind: str, namespace: str | None, name: str | None,
                       path: str) -> None:
    assert build_path(api_version, BUILTIN[(api_version, kind)], namespace, name) == path


def test_the_table_covers_every_kind_the_templates_produce() -> None:
    kinds = {kind for _, kind in BUILTIN}
    assert kinds >= {"Namespace", "ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment",
                     "StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert ("v1", "Namespace") not in apply.PRUNABLE_KINDS
    assert ("apps/v1", "Deployment") in apply.PRUNABLE_KINDS


def test_discovery_keeps_kinds_and_drops_subresources() -> None:
    body = {"kind": "APIResourceList", "groupVersion": "rbac.authorization.k8s.io/v1", "resources": [
        {"name": "roles", "kind": "Role", "namespaced": True, "verbs": ["get"]},
        {"name": "clusterroles", "kind": "ClusterRole", "namespaced": False, "verbs": ["get"]},
        {"name": "roles/status", "kind": "Role", "namespaced": True, "verbs": ["get"]},
    ]}
    assert parse_discovery(body) == {"Role": Resource("roles", namespaced=True),
                                     "ClusterRole": Resource("clusterroles", namespaced=False)}
    assert parse_discovery({}) == {}


def test_namespaces_go_first_and_the_rest_keep_their_order() -> None:
    objs = [{"kind": "ConfigMap", "n": 1}, {"kind": "Deployment", "n": 2}, {"kind": "Namespace", "n": 3},
            {"kind": "Service", "n": 4}, {"kind": "Namespace", "n": 5}]
    assert [o["n"] for o in apply.namespaces_first(objs)] == [3, 5, 1, 2, 4]


# --- normalize and diff ----------------------------------------------------------------------------

LIVE: Obj = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "bc-dev", "uid": "u-1", "resourceVersion": "42",
                 "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                 "managedFields": [{"manager": "bizcloud"}],
                 "annotations": {"deployment.kubernetes.io/revision": "3"}, "labels": {"app": "web"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "demo:v1"}]}}},
    "status": {"replicas": 2, "readyReplicas": 2},
}


def test_normalize_drops_server_noise_and_keeps_the_rest() -> None:
    clean = normalize(LIVE)
    assert clean["metadata"] == {"name": "web", "namespace": "bc-dev", "labels": {"app": "web"}}
    assert "status" not in clean and clean["spec"] == LIVE["spec"]
    assert LIVE["metadata"]["uid"] == "u-1"                      # the input is not touched


def test_normalize_keeps_annotations_of_our_own() -> None:
    obj = copy.deepcopy(LIVE)
    obj["metadata"]["annotations"]["bizcloud.io/config-hash"] = "abc"
    assert normalize(obj)["metadata"]["annotations"] == {"bizcloud.io/config-hash": "abc"}


def _with(obj: Obj, **spec: Any) -> Obj:
    changed = copy.deepcopy(obj)
    changed["spec"].update(spec)
    return changed


@pytest.mark.parametrize(("live", "merged", "action"), [
    (None, LIVE, Action.CREATE),
    (LIVE, _with(LIVE), Action.UNCHANGED),
    (LIVE, {**copy.deepcopy(LIVE), "status": {}, "metadata": {**LIVE["metadata"], "resourceVersion": "43"}},
     Action.UNCHANGED),
    (LIVE, _with(LIVE, replicas=3), Action.UPDATE),
], ids=["absent", "same", "only-noise-differs", "replicas"])
def test_decide(live: Obj | None, merged: Obj, action: Action) -> None:
    assert decide(live, merged) is action


def test_the_diff_text_shows_only_the_changed_lines() -> None:
    change = object_diff(LIVE, _with(LIVE, replicas=3))
    assert change.action is Action.UPDATE
    assert change.ref == ObjectRef("apps/v1", "Deployment", "bc-dev", "web")
    lines = change.text.splitlines()
    assert lines[:2] == ["--- live/Deployment bc-dev/web", "+++ merged/Deployment bc-dev/web"]
    assert [x for x in lines[2:] if x[:1] in "+-"] == ["-  replicas: 2", "+  replicas: 3"]
    assert "resourceVersion" not in change.text and object_diff(LIVE, LIVE).text == ""


def test_a_created_object_is_all_additions() -> None:
    change = object_diff(None, LIVE)
    assert change.action is Action.CREATE and change.live is None
    body = change.text.splitlines()[3:]
    assert body and all(line.startswith("+") for line in body)


def test_secret_values_are_masked_and_changes_still_show() -> None:
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw", "namespace": "bc-dev"},
            "data": {"user": "ZGVtbw==", "password": "b2xk"}}
    merged = copy.deepcopy(live)
    merged["data"]["password"] = "bmV3"
    merged["data"]["token"] = "dG9r"
    change = object_diff(live, merged)
    assert change.action is Action.UPDATE
    for value in ("ZGVtbw==", "b2xk", "bmV3", "dG9r"):
        assert value not in change.text
    assert "-  password: '*** (before)'\n+  password: '*** (after)'\n+  token: '*** (after)'\n" \
        in change.text
    assert "\n   user: '***'\n" in change.text
    assert merged["data"]["password"] == "bmV3"                # masking works on copies


# --- rollout status --------------------------------------------------------------------------------

def deployment(*, generation: int = 2, observed: int = 2, replicas: int = 3, updated: int = 3,
               total: int = 3, available: int = 3, ready: int = 3,
               conditions: list[Obj] | None = None) -> Obj:
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
                       "availableReplicas": available, "readyReplicas": ready,
                       "conditions": conditions or []}}


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "web-5d8" has timed out progressing.'}


@pytest.mark.parametrize(("obj", "state", "message"), [
    (deployment(), RolloutState.COMPLETE, "successfully rolled out"),
    (deployment(generation=3, observed=2), RolloutState.PROGRESSING, "spec update to be observed"),
    (deployment(generation=3, observed=2, conditions=[DEADLINE]), RolloutState.PROGRESSING,
     "spec update to be observed"),
    (deployment(updated=1, total=4, available=3), RolloutState.PROGRESSING,
     "1 out of 3 new replicas have been updated"),
    (deployment(total=5), RolloutState.PROGRESSING, "2 old replicas are pending termination"),
    (deployment(available=1), RolloutState.PROGRESSING, "1 of 3 updated replicas are available"),
    (deployment(available=0, conditions=[DEADLINE]), RolloutState.FAILED,
     'exceeded its progress deadline: ReplicaSet "web-5d8" has timed out progressing.'),
    (deployment(replicas=0, updated=0, total=0, available=0), RolloutState.COMPLETE, "successfully"),
], ids=["complete", "not-observed", "old-deadline-not-observed", "updating", "old-pending",
        "unavailable", "deadline", "zero"])
def test_deployment_rollout_follows_kubectl(obj: Obj, state: RolloutState, message: str) -> None:
    status = rollout_status(obj)
    assert status.state is state and message in status.message
    assert status.done is (state is not RolloutState.PROGRESSING)


def statefulset(*, generation: int = 1, observed: int | None = 1, replicas: int = 3, ready: int = 3,
                updated: int = 3, current: str = "r2", update: str = "r2",
                strategy: Obj | None = None) -> Obj:
    status: Obj = {"readyReplicas": ready, "updatedReplicas": updated, "currentRevision": current,
                   "updateRevision": update}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"kind": "StatefulSet", "metadata": {"name": "db", "generation": generation},
            "spec": {"replicas": replicas, "updateStrategy": strategy or {"type": "RollingUpdate"}},
            "status": status}


@pytest.mark.parametrize(("obj", "state", "message"), [
    (statefulset(), RolloutState.COMPLETE, "rolling update complete 3 pods at revision r2"),
    (statefulset(observed=None), RolloutState.PROGRESSING, "spec update to be observed"),
    (statefulset(generation=2), RolloutState.PROGRESSING, "spec update to be observed"),
    (statefulset(ready=1), RolloutState.PROGRESSING, "waiting for 2 pods to be ready"),
    (statefulset(current="r1", updated=1), RolloutState.PROGRESSING, "complete 1 pods at revision r2"),
    (statefulset(updated=1, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
     RolloutState.PROGRESSING, "1 out of 2 new pods have been updated"),
    (statefulset(updated=2, current="r1", strategy={"type": "RollingUpdate",
                                                    "rollingUpdate": {"partition": 1}}),
     RolloutState.COMPLETE, "partitioned roll out complete: 2 new pods"),
    (statefulset(strategy={"type": "OnDelete"}), RolloutState.FAILED, "only available for the RollingUpdate"),
], ids=["complete", "never-observed", "not-observed", "not-ready", "revision", "partition-waiting",
        "partition-done", "on-delete"])
def test_statefulset_rollout_follows_kubectl(obj: Obj, state: RolloutState, message: str) -> None:
    status = rollout_status(obj)
    assert status.state is state and message in status.message


def test_rollout_status_of_another_kind_is_refused() -> None:
    with pytest.raises(BizCloudError, match="only Deployments and StatefulSets"):
        rollout_status({"kind": "ConfigMap"})


def test_selector_string() -> None:
    assert selector_string({"spec": {"selector": {"matchLabels": {"b": "2", "a": "1"}}}}) == "a=1,b=2"
    assert selector_string({"spec": {}}) == ""


def _pod(name: str, *, waiting: Obj | None = None, last: Obj | None = None,
         unschedulable: str | None = None, ready: bool = True) -> Obj:
    container: Obj = {"name": "app", "state": {"waiting": waiting} if waiting else {"running": {}}}
    if last:
        container["lastState"] = {"terminated": last}
    conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": unschedulable}] if unschedulable else []
    if not ready:
        conditions.append({"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                           "message": "containers with unready status: [app]"})
    return {"metadata": {"name": name},
            "status": {"containerStatuses": [container], "conditions": conditions}}


def test_pod_problems_name_the_pod_the_container_and_the_reason() -> None:
    pods = [
        _pod("web-b", waiting={"reason": "ErrImageNeverPull",
                               "message": 'Container image "x:1" is not present with pull policy of Never'}),
        _pod("web-a", waiting={"reason": "CrashLoopBackOff", "message": "back-off 10s"},
             last={"exitCode": 1, "reason": "Error"}),
        _pod("web-c", waiting={"reason": "ContainerCreating"}),
        _pod("web-d"),
        _pod("web-e", unschedulable="0/1 nodes are available: 1 Insufficient cpu.", ready=False),
        _pod("web-f", waiting={"reason": "ErrImageNeverPull", "message": "x"}, ready=False),
        _pod("web-g", ready=False),
    ]
    assert pod_problems(pods, limit=10) == [
        "pod web-a container app: CrashLoopBackOff: back-off 10s (last exit 1: Error)",
        'pod web-b container app: ErrImageNeverPull: Container image "x:1" is not present with pull policy '
        "of Never",
        "pod web-e: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.",
        "pod web-f container app: ErrImageNeverPull: x",
        "pod web-g: ContainersNotReady: containers with unready status: [app]",
    ]
    assert len(pod_problems(pods)) == 3 and len(pod_problems(pods, limit=1)) == 1


# --- quantities ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("500m", Decimal("0.5")), ("1", Decimal(1)), ("1.5", Decimal("1.5")), ("64Mi", Decimal(64 * 2**20)),
    ("1Gi", Decimal(2**30)), ("1G", Decimal(10**9)), ("1k", Decimal(1000)), ("1e3", Decimal(1000)),
    ("100n", Decimal("1e-7")), (2, Decimal(2)),
])
def test_parse_quantity(text: str | int, value: Decimal) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "1.2.3", "5 cores", "Mi", "1mi", "-"])
def test_a_bad_quantity_names_the_field(text: str) -> None:
    with pytest.raises(BizCloudError) as bad:
        quantity.parse(text, field="cpu")
    assert bad.value.message.startswith("cpu:") and "500m" in bad.value.hint


@pytest.mark.parametrize(("resource", "value", "text"), [
    ("cpu", Decimal("0.25"), "250m"), ("cpu", Decimal(2), "2"), ("cpu", Decimal("0.0001"), "1m"),
    ("cpu", Decimal("1.5"), "1500m"), ("memory", Decimal(192 * 2**20), "192Mi"),
    ("memory", Decimal(2**30), "1Gi"), ("memory", Decimal(1000), "1000"), ("memory", Decimal("10.5"), "11"),
])
def test_format_quantity(resource: str, value: Decimal, text: str) -> None:
    assert quantity.format_resource(resource, value) == text


# --- resize plans ----------------------------------------------------------------------------------

def _resized_pod(resources: Obj) -> Obj:
    return {"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "app", "resources": resources}]}}


@pytest.mark.parametrize(("resources", "new", "expected"), [
    ({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
     {"cpu": "150m", "memory": "96Mi"},
     {"requests": {"cpu": "150m", "memory": "96Mi"}, "limits": {"cpu": "300m", "memory": "192Mi"}}),
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": "500m"}}, {"cpu": "1"},
     {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}),
    ({"requests": {"cpu": "100m", "memory": "64Mi"}}, {"memory": "1Gi"}, {"requests": {"memory": "1Gi"}}),
    ({"limits": {"memory": "128Mi"}}, {"memory": "256Mi"},
     {"requests": {"memory": "256Mi"}, "limits": {"memory": "256Mi"}}),
    ({"requests": {"cpu": "300m"}, "limits": {"cpu": "1"}}, {"cpu": "100m"},
     {"requests": {"cpu": "100m"}, "limits": {"cpu": "334m"}}),
], ids=["ratio-kept", "guaranteed-stays-guaranteed", "request-only", "implicit-request", "rounded-up"])
def test_desired_resources(resources: Obj, new: dict[str, str], expected: Obj) -> None:
    assert desired_resources(_resized_pod(resources), "app", new) == expected


def test_resize_of_an_unknown_container_names_the_ones_there() -> None:
    with pytest.raises(BizCloudError) as missing:
        desired_resources(_resized_pod({}), "sidecar", {"cpu": "1"})
    assert "sidecar" in missing.value.message and "app" in missing.value.hint


def test_resize_patch_merges_the_container_by_name() -> None:
    assert resize_patch("app", {"requests": {"cpu": "1"}}) == \
        {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1"}}}]}}


def _status_pod(reported: Obj, conditions: list[Obj] | None = None) -> Obj:
    return {"status": {"containerStatuses": [{"name": "app", "resources": reported}],
                       "conditions": conditions or []}}


def test_applied_compares_values_not_text() -> None:
    wanted = {"requests": {"cpu": "1000m", "memory": "1024Mi"}}
    assert applied(_status_pod({"requests": {"cpu": "1", "memory": "1Gi"}}), "app", wanted)
    assert not applied(_status_pod({"requests": {"cpu": "500m", "memory": "1Gi"}}), "app", wanted)
    assert not applied(_status_pod({"requests": {"memory": "1Gi"}}), "app", wanted)
    assert not applied(_status_pod({"requests": {"cpu": "1", "memory": "1Gi"}}), "sidecar", wanted)


@pytest.mark.parametrize(("condition", "expected"), [
    ({"type": "PodResizePending", "reason": "Infeasible", "message": "Node didn't have enough capacity",
      "observedGeneration": 4}, ("Infeasible", "Node didn't have enough capacity")),
    ({"type": "PodResizePending", "reason": "Deferred", "message": "not now", "observedGeneration": 5},
     ("Deferred", "not now")),
    ({"type": "PodResizeInProgress", "reason": "Error", "message": "runtime said no"},
     ("Error", "runtime said no")),
    ({"type": "PodResizePending", "reason": "Infeasible", "message": "old", "observedGeneration": 3}, None),
    ({"type": "PodResizeInProgress", "status": "True"}, None),
    ({"type": "Ready", "status": "True"}, None),
], ids=["infeasible", "deferred", "error-without-generation", "older-resize", "in-progress", "other"])
def test_refusal(condition: Obj, expected: tuple[str, str] | None) -> None:
    assert refusal(_status_pod({}, [condition]), generation=4) == expected
