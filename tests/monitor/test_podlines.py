"""``slim_event`` gives what decoding a watch line whole and slimming its pod gives, on every shape."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from bizcloud.monitor.instances import SOA_INTERFACES_ANNOTATION, instance_from_pod, slim_pod
from bizcloud.monitor.podlines import slim_event
from tests.monitor.test_instances import INSTANCE_CASES, SKIPPED_CASES, full_pod, pod


def line(kind: str, obj: Any) -> bytes:
    return orjson.dumps({"type": kind, "object": obj})


def the_usual_way(raw: bytes) -> Any:
    event = orjson.loads(raw)
    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
        event["object"] = slim_pod(event["object"])
    return event


@pytest.mark.parametrize(("case", "given"), [(row[0], row[1]) for row in SKIPPED_CASES + INSTANCE_CASES])
@pytest.mark.parametrize("kind", ["ADDED", "MODIFIED", "DELETED"])
def test_every_table_pod_decodes_as_it_slims(case: str, given: dict[str, Any], kind: str) -> None:
    raw = line(kind, full_pod(given))
    decoded = slim_event(raw)
    assert decoded == the_usual_way(raw), case
    assert instance_from_pod(decoded["object"]) == instance_from_pod(full_pod(given)), case


def test_the_soa_annotation_is_the_only_one_kept_and_only_when_set() -> None:
    full = full_pod(pod())
    assert slim_event(line("ADDED", full))["object"]["metadata"]["annotations"] == {
        SOA_INTERFACES_ANNOTATION: "com.example.Orders"}
    full["metadata"]["annotations"][SOA_INTERFACES_ANNOTATION] = None
    assert "annotations" not in slim_event(line("ADDED", full))["object"]["metadata"]
    del full["metadata"]["annotations"]
    assert slim_event(line("ADDED", full)) == the_usual_way(line("ADDED", full))


SHAPES: list[tuple[str, bytes]] = [
    ("a bare pod", line("ADDED", {"metadata": {"uid": "u", "name": "p", "namespace": "bc-dev"}})),
    ("an empty object", line("ADDED", {})),
    ("null containers", line("ADDED", {**pod(), "spec": {"containers": None}})),
    ("a container that is not an object", line("MODIFIED", {**pod(), "spec": {"containers": [1]}})),
    ("null metadata", line("ADDED", {**pod(), "metadata": None})),
    ("a bookmark ending the initial events", line("BOOKMARK", {"kind": "Pod", "metadata": {
        "resourceVersion": "42", "annotations": {"k8s.io/initial-events-end": "true"}}})),
    ("a 410", line("ERROR", {"kind": "Status", "code": 410, "reason": "Expired",
                             "message": "too old resource version"})),
    ("an unknown event type", line("SOMETHING", {"metadata": {"uid": "u"}})),
]


def outcome(decode: Callable[[bytes], Any], raw: bytes) -> Any:
    """What ``decode`` gives, or the type of what it raises (a pod ``slim_pod`` cannot slim)."""
    try:
        return decode(raw)
    except Exception as e:
        return type(e)


@pytest.mark.parametrize(("case", "raw"), SHAPES, ids=[case for case, _ in SHAPES])
def test_other_shapes_fall_back_to_the_whole_decoding(case: str, raw: bytes) -> None:
    assert outcome(slim_event, raw) == outcome(the_usual_way, raw), case


def test_a_bookmark_keeps_its_annotations_and_an_error_its_status() -> None:
    bookmark = slim_event(SHAPES[5][1])
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert slim_event(SHAPES[6][1])["object"]["code"] == 410


def test_malformed_json_is_a_value_error_as_with_json_loads() -> None:
    with pytest.raises(ValueError):
        slim_event(b'{"type": "ADDED", "object": {')


def test_what_is_not_kept_is_not_in_the_event() -> None:
    full = copy.deepcopy(full_pod(pod()))
    decoded = slim_event(line("ADDED", full))["object"]
    assert set(decoded) == {"metadata", "spec", "status"}
    assert "managedFields" not in decoded["metadata"] and "image" not in decoded["spec"]["containers"][0]
    assert "hostIP" not in decoded["status"]
