"""The reflector against the real API server: events, label filtering, bookmarks, and 410 → relist.

The pods here never run: a scheduling gate keeps them unscheduled, so they cost nothing, no
kubelet or pod GC touches them, and deleting one is immediate. Each test works in a namespace of
its own; the reflector watches all namespaces (as the monitor does), so the recorder keeps only
what happens in that namespace.

How a 410 is really produced (learned from k8s.io/apiserver v0.34.4, storage/cacher): a watch
with a resourceVersion is served from the API server's watch cache, not from etcd, so
compacting etcd does *not* expire it. The watch cache keeps a ring of recent events per
resource type (100 to 102 400 slots) and only grows while its oldest event is younger than 75 s
(``DefaultEventFreshDuration``). An old resourceVersion expires when the events after it were
pushed out of that ring: wait more than 75 s, then cause enough pod events to overwrite them.
The 410 then arrives inside an HTTP 200 stream as ``{"type": "ERROR", "object": {"code": 410}}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from bizcloud.kube.client import KubeClient, Obj, Objs
from bizcloud.kube.errors import Gone, NotFound
from bizcloud.kube.informer import SERVICE_LABEL, Reflector
from bizcloud.settings import Settings
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e

EVENT_FRESH_SECONDS = 75  # the watch cache keeps at least this much history


@pytest.fixture
async def ns(kube: KubeClient) -> AsyncIterator[str]:
    name = f"bc-e2e-inf-{uuid.uuid4().hex[:6]}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": name}})

    async def has_default_service_account() -> bool:
        try:
            await kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
        except NotFound:
            return False
        return True

    await eventually(has_default_service_account, timeout=60, what=f"the default ServiceAccount in {name}")
    yield name
    await kube.delete(f"/api/v1/namespaces/{name}")


@contextlib.asynccontextmanager
async def running(reflector: Reflector) -> AsyncIterator[asyncio.Task[None]]:
    """The reflector running until the block ends (then stopped and awaited)."""
    stop = asyncio.Event()
    task = asyncio.create_task(reflector.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


def pod(name: str, namespace: str, *, service: str | None) -> Obj:
    """A pod that is never scheduled (so never runs), labelled as a BizCloud instance or not."""
    labels = {SERVICE_LABEL: service} if service else {"app": name}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"schedulingGates": [{"name": "bizcloud.io/never"}],
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": "demo:v1",
                                     "imagePullPolicy": "IfNotPresent"}]}}


class Recorder:
    """A consumer that diffs each sync with what it knew, as the monitor will."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[tuple[str, str]] = []
        self.syncs: list[list[str]] = []
        self.known: dict[str, str] = {}               # uid -> name, in our namespace
        self.deleted_by_sync: list[str] = []           # deletions noticed only by diffing a sync
        self.chunks: list[tuple[int, Objs]] = []       # every list chunk (all namespaces)
        self.synced_lists: list[Objs] = []             # every complete list (all namespaces)

    def _mine(self, obj: Obj) -> bool:
        return bool(obj["metadata"].get("namespace") == self.namespace)

    async def on_list_chunk(self, objects: Objs, offset: int) -> None:
        self.chunks.append((offset, objects))

    async def on_sync(self, objects: Objs, resource_version: str) -> None:
        assert resource_version
        self.synced_lists.append(objects)
        current = {o["metadata"]["uid"]: o["metadata"]["name"] for o in objects if self._mine(o)}
        self.deleted_by_sync += [name for uid, name in self.known.items() if uid not in current]
        self.known = current
        self.syncs.append(sorted(current.values()))

    async def on_event(self, type: str, obj: Obj) -> None:
        if not self._mine(obj):
            return
        meta = obj["metadata"]
        self.events.append((type, meta["name"]))
        if type == "DELETED":
            self.known.pop(meta["uid"], None)
        else:
            self.known[meta["uid"]] = meta["name"]

    def types_of(self, name: str) -> list[str]:
        return [t for t, n in self.events if n == name]


async def test_labelled_pods_are_added_modified_and_deleted_others_never_seen(kube: KubeClient, ns: str
                                                                              ) -> None:
    recorder = Recorder(ns)
    reflector = Reflector(kube, recorder)
    async with running(reflector):
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        pods = f"/api/v1/namespaces/{ns}/pods"
        await kube.create(pods, pod("web-1", ns, service="demo-web"))
        await kube.create(pods, pod("other-1", ns, service=None))
        await eventually(lambda: recorder.types_of("web-1"), timeout=10, what="ADDED web-1")
        await kube.patch(f"{pods}/web-1", {"metadata": {"annotations": {"touched": "yes"}}})
        await eventually(lambda: "MODIFIED" in recorder.types_of("web-1"), timeout=10, what="MODIFIED web-1")
        await kube.delete(f"{pods}/web-1")
        await eventually(lambda: "DELETED" in recorder.types_of("web-1"), timeout=10, what="DELETED web-1")
        # the unlabelled pod's own changes must not reach us either
        await kube.patch(f"{pods}/other-1", {"metadata": {"annotations": {"touched": "yes"}}})
        await kube.delete(f"{pods}/other-1")
        await asyncio.sleep(1.0)
    types = recorder.types_of("web-1")
    assert types[0] == "ADDED" and types[-1] == "DELETED" and "MODIFIED" in types[1:-1]
    assert recorder.types_of("other-1") == []
    assert recorder.syncs == [[]]
    assert recorder.known == {}
    assert reflector.errors == 0 and reflector.relists == 1 and reflector.expired == 0


async def test_bookmarks_move_the_resource_version_past_filtered_events(kube: KubeClient, ns: str) -> None:
    """A pod outside our selector changes the cluster's resourceVersion; a BOOKMARK carries it to us.

    The watch cache sends a bookmark about once a minute and 2 s before the watch's own
    deadline, and only when its resourceVersion is newer than the watcher's — so a short
    ``timeoutSeconds`` (3 to 6 s here) and one unrelated pod make one arrive within seconds.
    """
    recorder = Recorder(ns)
    reflector = Reflector(kube, recorder, min_watch_timeout=3)
    async with running(reflector):
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        listed_at = int(reflector.last_resource_version)
        created = await kube.create(f"/api/v1/namespaces/{ns}/pods", pod("unlabelled", ns, service=None))
        pod_rv = int(created["metadata"]["resourceVersion"])
        assert pod_rv > listed_at
        # resourceVersions are opaque to clients; comparing them as integers is a test-only
        # assumption that holds for etcd-backed API servers
        await eventually(lambda: reflector.bookmarks >= 1 and int(reflector.last_resource_version) >= pod_rv,
                         timeout=20, what="a bookmark at or after the unlabelled pod's resourceVersion")
        await eventually(lambda: reflector.watch_restarts >= 1, timeout=15, what="a watch to time out")
    assert recorder.events == []
    assert reflector.relists == 1, "a watch that ends normally is resumed, not relisted"
    assert reflector.errors == 0


async def etcd_compact(settings: Settings) -> int:
    """Compact etcd (physically) at its current revision, through etcd's JSON gateway."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.etcd_port}", timeout=10) as etcd:
        header = (await etcd.post("/v3/kv/range", json={"key": base64.b64encode(b"\0").decode()})
                  ).raise_for_status().json()["header"]
        revision = int(header["revision"])
        (await etcd.post("/v3/kv/compaction", json={"revision": revision, "physical": True})
         ).raise_for_status()
    return revision


async def watch_replays(kube: KubeClient, namespace: str, resource_version: str) -> list[tuple[str, str]]:
    """What a watch from ``resource_version`` replays (raises Gone if that is too old)."""
    events = kube.stream_watch(f"/api/v1/namespaces/{namespace}/pods",
                               {"resourceVersion": resource_version, "timeoutSeconds": 1}, read_timeout=10)
    return [(e["type"], e["object"]["metadata"]["name"]) async for e in events]


async def test_a_410_leads_to_a_relist_that_reveals_the_missed_delete(
        kube: KubeClient, ns: str, real_cluster: Settings) -> None:
    recorder = Recorder(ns)
    reflector = Reflector(kube, recorder)
    pods = f"/api/v1/namespaces/{ns}/pods"
    async with running(reflector):                 # stopped at the end: everything after is missed
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        await kube.create(pods, pod("keep", ns, service="demo-web"))
        await kube.create(pods, pod("doomed", ns, service="demo-web"))
        await kube.create(pods, pod("churn", ns, service=None))
        await eventually(lambda: sorted(recorder.known.values()) == ["doomed", "keep"], timeout=10,
                         what="ADDED keep and doomed")
    paused_at = reflector.last_resource_version
    await kube.delete(f"{pods}/doomed")

    # Compacting etcd does not expire the old resourceVersion: the watch cache still replays it.
    await etcd_compact(real_cluster)
    assert ("DELETED", "doomed") in await watch_replays(kube, ns, paused_at)

    # Let the delete age past the cache's fresh window, then push it out of the ring.
    await asyncio.sleep(EVENT_FRESH_SECONDS + 5)
    churned = 0
    while True:
        await asyncio.gather(*(kube.patch(f"{pods}/churn", {"metadata": {"annotations": {"n": str(n)}}})
                               for n in range(churned, churned + 50)))
        churned += 50
        try:
            await watch_replays(kube, ns, paused_at)
        except Gone as e:
            assert "too old resource version" in e.api_message
            break
        assert churned < 110_000, "the watch cache never let the old resourceVersion expire"
    print(f"410 after {churned} pod updates")

    async with running(reflector):  # resumes the watch from paused_at
        await eventually(lambda: reflector.relists == 2, timeout=20, what="the relist after 410")
    assert reflector.expired == 1
    assert recorder.syncs[-1] == ["keep"]
    assert recorder.deleted_by_sync == ["doomed"]
    assert "DELETED" not in recorder.types_of("doomed"), "the delete was missed by the watch"
    assert int(reflector.last_resource_version) > int(paused_at)


class FailOnce(Recorder):
    """A consumer whose first MODIFIED fails, as a subscriber bug or a full disk would."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.failed = False

    async def on_event(self, type: str, obj: Obj) -> None:
        if type == "MODIFIED" and self._mine(obj) and not self.failed:
            self.failed = True
            raise RuntimeError("subscriber exploded")
        await super().on_event(type, obj)


async def test_a_failing_handler_is_logged_and_answered_with_a_relist(
        kube: KubeClient, ns: str, caplog: pytest.LogCaptureFixture) -> None:
    recorder = FailOnce(ns)
    reflector = Reflector(kube, recorder)
    pods = f"/api/v1/namespaces/{ns}/pods"
    async with running(reflector) as task:
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        await kube.create(pods, pod("web-1", ns, service="demo-web"))
        await eventually(lambda: recorder.types_of("web-1") == ["ADDED"], timeout=10, what="ADDED web-1")
        await kube.patch(f"{pods}/web-1", {"metadata": {"labels": {"bizcloud.io/release": "v2"}}})
        await eventually(lambda: reflector.relists == 2, timeout=10, what="the relist after the failure")
        await kube.create(pods, pod("web-2", ns, service="demo-web"))
        await eventually(lambda: recorder.types_of("web-2") == ["ADDED"], timeout=10,
                         what="events to flow again after the relist")
    assert not task.cancelled() and task.exception() is None
    assert reflector.errors == 1
    assert recorder.syncs == [[], ["web-1"]], "the relist hands over the state the failed event carried"
    assert any("handler failed" in r.message and r.exc_info for r in caplog.records)


class Slimmed(Recorder):
    """A recorder that insists on being handed only what the transform kept."""

    async def on_sync(self, objects: Objs, resource_version: str) -> None:
        assert all(set(o) == {"metadata", "slim"} for o in objects), "an object skipped the transform"
        await super().on_sync(objects, resource_version)

    async def on_list_chunk(self, objects: Objs, offset: int) -> None:
        assert all(set(o) == {"metadata", "slim"} for o in objects), "a chunk skipped the transform"
        await super().on_list_chunk(objects, offset)

    async def on_event(self, type: str, obj: Obj) -> None:
        assert set(obj) == {"metadata", "slim"}, "an event skipped the transform"
        await super().on_event(type, obj)


def keep_metadata(obj: Obj) -> Obj:
    return {"metadata": {k: obj["metadata"][k] for k in ("uid", "name", "namespace")}, "slim": True}


@pytest.mark.parametrize("streaming_list", [True, False], ids=["streamed list", "paginated list"])
async def test_the_transform_reaches_every_listed_and_watched_object(kube: KubeClient, ns: str,
                                                                     streaming_list: bool) -> None:
    pods = f"/api/v1/namespaces/{ns}/pods"
    await kube.create(pods, pod("listed-1", ns, service="demo-web"))
    recorder = Slimmed(ns)
    reflector = Reflector(kube, recorder, streaming_list=streaming_list, transform=keep_metadata)
    async with running(reflector):
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        await kube.create(pods, pod("watched-1", ns, service="demo-web"))
        await kube.delete(f"{pods}/watched-1")
        await eventually(lambda: "DELETED" in recorder.types_of("watched-1"), timeout=10,
                         what="DELETED watched-1")
    assert recorder.syncs == [["listed-1"]]
    assert recorder.types_of("watched-1")[0] == "ADDED"
    assert reflector.errors == 0, "a handler assertion failed: an object skipped the transform"
    assert reflector.last_resource_version, "the resourceVersion is read before the transform drops it"


async def test_a_failing_transform_is_answered_with_a_relist(kube: KubeClient, ns: str) -> None:
    failed: list[str] = []

    def fail_once(obj: Obj) -> Obj:   # only ours: other tests' namespaces may still hold a web-2
        if (obj["metadata"]["namespace"], obj["metadata"]["name"]) == (ns, "web-2") and not failed:
            failed.append("web-2")
            raise ValueError("transform exploded")
        return obj

    recorder = Recorder(ns)
    reflector = Reflector(kube, recorder, transform=fail_once)
    pods = f"/api/v1/namespaces/{ns}/pods"
    async with running(reflector) as task:
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        await kube.create(pods, pod("web-2", ns, service="demo-web"))
        await eventually(lambda: reflector.relists == 2, timeout=10, what="the relist after the failure")
    assert not task.cancelled() and task.exception() is None
    assert reflector.errors == 1 and failed == ["web-2"]
    assert recorder.syncs == [[], ["web-2"]], "the relist hands over the object the transform failed on"


@pytest.mark.parametrize("streaming_list", [True, False], ids=["streamed list", "paginated list"])
async def test_a_streamed_list_reaches_the_handler_in_chunks_before_it_ends(kube: KubeClient, ns: str,
                                                                           streaming_list: bool) -> None:
    """Chunks of ``list_chunk`` objects, at consecutive offsets from 0, that are the very objects
    ``on_sync`` then gets first; a paginated list (no stream to overlap with) comes whole."""
    pods = f"/api/v1/namespaces/{ns}/pods"
    for i in range(5):
        await kube.create(pods, pod(f"listed-{i}", ns, service="demo-web"))
    recorder = Recorder(ns)
    reflector = Reflector(kube, recorder, streaming_list=streaming_list, list_chunk=2)
    async with running(reflector):
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
    assert reflector.errors == 0
    assert recorder.syncs == [[f"listed-{i}" for i in range(5)]]
    if not streaming_list:
        assert recorder.chunks == []
        return
    (listed,) = recorder.synced_lists
    assert [offset for offset, _ in recorder.chunks] == list(range(0, len(listed) - 1, 2))
    assert all(len(objects) == 2 for _, objects in recorder.chunks)
    handed = [obj for _, objects in recorder.chunks for obj in objects]
    assert len(listed) - len(handed) < 2, "only the last, incomplete chunk waits for the end"
    assert all(a is b for a, b in zip(handed, listed, strict=False)), \
        "on_sync starts with the chunks' objects"


@pytest.mark.parametrize("streaming_list", [True, False], ids=["streamed list", "paginated list"])
async def test_a_decoder_stands_in_for_decoding_and_transforming_watched_objects(
        kube: KubeClient, ns: str, streaming_list: bool) -> None:
    """Watch lines go through ``decode`` (which slims them itself), and never through the
    transform; a paginated list's items still go through the transform. A decoder that fails
    (once, on our pod) is answered with a relist."""
    calls = {"decode": 0, "transform": 0, "failed": 0}

    def transform(obj: Obj) -> Obj:
        calls["transform"] += 1
        return keep_metadata(obj)

    def decode(line: bytes) -> Obj:
        calls["decode"] += 1
        event = orjson.loads(line)
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            meta = event["object"]["metadata"]
            if (meta["namespace"], meta["name"]) == (ns, "poison") and not calls["failed"]:
                calls["failed"] += 1
                raise KeyError("decoder exploded")
            event["object"] = keep_metadata(event["object"])
        return event

    pods = f"/api/v1/namespaces/{ns}/pods"
    await kube.create(pods, pod("listed-1", ns, service="demo-web"))
    recorder = Slimmed(ns)
    reflector = Reflector(kube, recorder, streaming_list=streaming_list, transform=transform, decode=decode)
    async with running(reflector):
        await eventually(lambda: reflector.relists == 1, timeout=10, what="the first list")
        listed_transforms = calls["transform"]
        await kube.create(pods, pod("watched-1", ns, service="demo-web"))
        await eventually(lambda: recorder.types_of("watched-1") == ["ADDED"], timeout=10,
                         what="ADDED watched-1")
        await kube.create(pods, pod("poison", ns, service="demo-web"))
        await eventually(lambda: reflector.relists == 2, timeout=10,
                         what="the relist after the decoder failed")
    assert recorder.syncs[0] == ["listed-1"] and recorder.syncs[-1] == ["listed-1", "poison", "watched-1"]
    assert reflector.errors == 1, "only the decoder's failure: every object the handler got was slimmed"
    assert calls["decode"] > 0
    if streaming_list:
        assert calls["transform"] == 0, "a decoded line's object is not transformed again"
    else:
        assert listed_transforms > 0 and calls["transform"] > listed_transforms, \
            "the pages' items are transformed; watched lines are not (the relist's pages are)"
