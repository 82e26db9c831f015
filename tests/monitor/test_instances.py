"""The monitor's pure rules, as tables: which pods are instances, and which transitions matter."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bizcloud.monitor.instances import (
    AUTHORIZED_GATE,
    SOA_INTERFACES_ANNOTATION,
    Skipped,
    SkipReason,
    address_moved,
    diff,
    events_for,
    instance_from_pod,
    slim_pod,
)
from bizcloud.monitor.model import EventType, Group, Instance


def pod(*, labels: dict[str, str] | None = None, namespace: str = "bc-dev", ip: str | None = "10.88.0.5",
        ready: bool = True, deleting: bool = False, ports: list[dict[str, Any]] | None = None,
        uid: str = "uid-1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-1", "namespace": namespace, "uid": uid,
                            "labels": {"bizcloud.io/service": "web"} if labels is None else labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-27T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "app", "ports": [{"name": "http", "containerPort": 8080}] if ports is None else ports}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def stopped(given: dict[str, Any]) -> dict[str, Any]:
    given["status"]["containerStatuses"] = [{"name": "app", "state": {"terminated": {"exitCode": 0}}}]
    return given


def phase(given: dict[str, Any], value: str) -> dict[str, Any]:
    given["status"]["phase"] = value
    return given


def gated(given: dict[str, Any], status: str | None) -> dict[str, Any]:
    """``given`` with the ``bizcloud.io/authorized`` readiness gate, its condition at ``status``."""
    given["spec"]["readinessGates"] = [{"conditionType": AUTHORIZED_GATE}]
    if status is not None:
        given["status"]["conditions"].append({"type": AUTHORIZED_GATE, "status": status})
    return given


SKIPPED_CASES = [
        ("invalid service name", pod(labels={"bizcloud.io/service": "Web_1"}), SkipReason.BAD_SERVICE),
        ("empty service name", pod(labels={"bizcloud.io/service": ""}), SkipReason.BAD_SERVICE),
        ("no env label outside bc-*", pod(namespace="default"), SkipReason.NO_ENV),
        ("invalid env label", pod(labels={"bizcloud.io/service": "web", "bizcloud.io/env": "Prod!"}),
         SkipReason.BAD_ENV),
        ("unknown group", pod(labels={"bizcloud.io/service": "web", "bizcloud.io/group": "canary"}),
         SkipReason.BAD_GROUP),
        ("no named ports", pod(ports=[{"containerPort": 8080}]), SkipReason.NO_TRAFFIC_PORT),
        ("only other named ports", pod(ports=[{"name": "metrics", "containerPort": 9090}]),
         SkipReason.NO_TRAFFIC_PORT),
        ("one name, two numbers", pod(ports=[{"name": "http", "containerPort": 80},
                                             {"name": "http", "containerPort": 81}]),
         SkipReason.CONFLICTING_PORTS),
]


@pytest.mark.parametrize(("case", "given", "reason"), SKIPPED_CASES)
def test_pods_that_are_not_instances_say_why(case: str, given: dict[str, Any], reason: SkipReason) -> None:
    result = instance_from_pod(given)
    assert isinstance(result, Skipped), case
    assert result.reason is reason


INSTANCE_CASES = [
        ("env from the namespace", pod(), {"service": "web", "env": "dev", "group": Group.NORMAL}),
        ("env label wins", pod(labels={"bizcloud.io/service": "web", "bizcloud.io/env": "qa"}),
         {"env": "qa"}),
        ("gray group", pod(labels={"bizcloud.io/service": "web", "bizcloud.io/group": "gray"}),
         {"group": Group.GRAY}),
        ("release label", pod(labels={"bizcloud.io/service": "web", "bizcloud.io/release": "v2"}),
         {"release": "v2"}),
        ("soa port is enough", pod(ports=[{"name": "soa", "containerPort": 20880}]),
         {"ports": {"soa": 20880}}),
        ("UDP ports are not traffic ports",
         pod(ports=[{"name": "http", "containerPort": 80},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"}]),
         {"ports": {"http": 80}}),
        ("serving", pod(), {"serving": True}),
        ("not Ready", pod(ready=False), {"serving": False}),
        ("no IP yet", pod(ip=None), {"serving": False, "ip": None}),
        ("terminating", pod(deleting=True), {"serving": False, "terminating": True}),
        ("not Ready yet, but addressed: it is granted", pod(ready=False), {"addressed": True}),
        ("terminating, draining: still addressed", pod(deleting=True), {"addressed": True, "stopped": False}),
        ("terminating, containers stopped: not addressed", stopped(pod(deleting=True)),
         {"addressed": False, "stopped": True}),
        ("terminating, phase Succeeded", phase(pod(deleting=True), "Succeeded"), {"addressed": False}),
        ("a new pod's containers not started: addressed", pod(ready=False), {"stopped": False}),
        ("no authorized gate", pod(), {"authorized": None}),
        ("gate waiting", gated(pod(ready=False), None), {"authorized": False, "addressed": True}),
        ("gate held", gated(pod(ready=False), "False"), {"authorized": False}),
        ("gate open", gated(pod(), "True"), {"authorized": True, "serving": True}),
]


@pytest.mark.parametrize(("case", "given", "expected"), INSTANCE_CASES)
def test_pods_become_instances(case: str, given: dict[str, Any], expected: dict[str, Any]) -> None:
    result = instance_from_pod(given)
    assert isinstance(result, Instance), case
    for attribute, value in expected.items():
        assert getattr(result, attribute) == value, f"{case}: {attribute}"


def full_pod(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` as the API server sends it: every field the monitor does not read, too."""
    full = copy.deepcopy(given)
    full["apiVersion"], full["kind"] = "v1", "Pod"
    meta = full["metadata"]
    meta.update(resourceVersion="4711", generateName="web-", creationTimestamp="2026-11-27T00:00:00Z",
                ownerReferences=[{"kind": "ReplicaSet", "name": "web-5d9", "uid": "rs-1"}],
                managedFields=[{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}])
    meta["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 2000 + "}",
                           SOA_INTERFACES_ANNOTATION: "com.example.Orders"}
    for container in full["spec"]["containers"]:
        container.update(image="web:1", env=[{"name": "A", "value": "1"}],
                         resources={"limits": {"cpu": "1"}}, volumeMounts=[{"name": "v", "mountPath": "/v"}])
    full["spec"].update(volumes=[{"name": "v", "emptyDir": {}}], restartPolicy="Always",
                        tolerations=[{"key": "k", "operator": "Exists"}])
    full["status"].update(hostIP="10.0.0.1", qosClass="Burstable", startTime="2026-11-27T00:00:00Z",
                          podIPs=[{"ip": full["status"].get("podIP")}])
    full["status"].setdefault("containerStatuses", [{"name": "app", "state": {"running": {}}}])
    for status in full["status"]["containerStatuses"]:
        status.update(image="web:1", imageID="sha256:0", restartCount=0, ready=True)
    return full


@pytest.mark.parametrize(("case", "given"), [(row[0], row[1]) for row in SKIPPED_CASES + INSTANCE_CASES])
def test_the_slim_pod_decides_as_the_full_pod_does(case: str, given: dict[str, Any]) -> None:
    """The informer keeps ``slim_pod`` of each pod (its transform): nothing it drops may matter."""
    full = full_pod(given)
    slim = slim_pod(full)
    assert instance_from_pod(slim) == instance_from_pod(full), case
    assert slim["metadata"]["resourceVersion"] == "4711"
    assert len(json.dumps(slim)) < len(json.dumps(full)) / 3, "the slim pod keeps what is not read"
    assert "managedFields" not in slim["metadata"] and "env" not in json.dumps(slim["spec"])


def test_the_slim_pod_of_a_sparse_pod() -> None:
    """A pod as bare as the API allows (no spec fields set, no status yet) slims without error."""
    bare = {"metadata": {"uid": "u", "name": "p", "namespace": "bc-dev",
                         "labels": {"bizcloud.io/service": "web"}}}
    assert slim_pod(bare) == {"metadata": bare["metadata"], "spec": {}, "status": {}}
    assert instance_from_pod(slim_pod(bare)) == instance_from_pod(bare)
    assert slim_pod({}) == {"metadata": {}, "spec": {}, "status": {}}


def _inst(**changes: Any) -> Instance:
    base = instance_from_pod(pod())
    assert isinstance(base, Instance)
    return Instance(**{**base.__dict__, **changes})


SERVING = _inst()
NOT_READY = _inst(ready=False)
TERMINATING = _inst(terminating=True)
STOPPED = _inst(terminating=True, stopped=True)


@pytest.mark.parametrize(
    ("case", "old", "new", "expected"),
    [
        ("nothing to nothing", None, None, None),
        ("new pod not Ready yet", None, NOT_READY, None),
        ("becomes Ready", NOT_READY, SERVING, EventType.UP),
        ("appears Ready (relist)", None, SERVING, EventType.UP),
        ("deletion starts: DOWN at once", SERVING, TERMINATING, EventType.DOWN),
        ("vanishes (missed DELETE)", SERVING, None, EventType.DOWN),
        ("readiness lost", SERVING, NOT_READY, EventType.DOWN),
        ("IP lost", SERVING, _inst(ip=None), EventType.DOWN),
        ("status noise only", SERVING, _inst(), None),
        ("port changed", SERVING, _inst(ports={"http": 9090}), EventType.CHANGED),
        ("release changed", SERVING, _inst(release="v9"), EventType.CHANGED),
        ("SOA interfaces changed", SERVING, _inst(soa_interfaces="com.example.Api"), EventType.CHANGED),
        ("terminating stays down", TERMINATING, None, None),
    ],
)
def test_transitions(case: str, old: Instance | None, new: Instance | None, expected: EventType | None
                     ) -> None:
    assert diff(old, new) is expected, case


def test_down_carries_the_last_serving_state() -> None:
    (event,) = events_for(SERVING, _inst(ip=None, ready=False))
    assert event.type is EventType.DOWN
    assert event.instance.ip == SERVING.ip


def test_a_pod_moving_to_the_gray_group_leaves_normal_first() -> None:
    gray = _inst(group=Group.GRAY)
    down, up = events_for(SERVING, gray, resource_version="42")
    assert (down.type, down.instance.group) == (EventType.DOWN, Group.NORMAL)
    assert (up.type, up.instance.group) == (EventType.UP, Group.GRAY)
    assert up.resource_version == "42"


def test_the_soa_interfaces_annotation_is_carried_as_written() -> None:
    given = pod(ports=[{"name": "soa", "containerPort": 20880}])
    given["metadata"]["annotations"] = {"bizcloud.io/soa-interfaces": "com.example.A, com.example.B"}
    instance = instance_from_pod(given)
    assert isinstance(instance, Instance)
    assert instance.soa_interfaces == "com.example.A, com.example.B"  # the SOA registry validates it
    assert instance.ports == {"soa": 20880}
    assert SERVING.soa_interfaces is None


@pytest.mark.parametrize(
    ("case", "old", "new", "expected"),
    [
        ("a new pod gets its IP before Ready", None, _inst(ready=False), True),
        ("no IP yet", None, _inst(ready=False, ip=None), False),
        ("becomes Ready: grants unchanged", NOT_READY, SERVING, False),
        ("readiness lost: keeps its grants", SERVING, NOT_READY, False),
        ("deletion starts: it drains with its grants", SERVING, TERMINATING, False),
        ("its containers stopped after the deletion", TERMINATING, STOPPED, True),
        ("gone", SERVING, None, True),
        ("moved to another environment", SERVING, _inst(env="qa"), True),
        ("its gate opened", _inst(authorized=False), _inst(authorized=True), True),
        ("release changed", SERVING, _inst(release="v9"), False),
    ],
)
def test_which_changes_authorization_looks_at(case: str, old: Instance | None, new: Instance | None,
                                               expected: bool) -> None:
    assert address_moved(old, new) is expected, case
