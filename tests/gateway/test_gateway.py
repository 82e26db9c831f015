"""The gateway on a real nginx: routing, reload-free changes, the gray split, bad input, restarts, stats."""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from pathlib import Path

import httpx

from bizcloud.catalog.policies import GrayPolicyOut, UidSource
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType, Group
from bizcloud.usersplit import bucket
from tests.catalog.conftest import event, instance
from tests.gateway.conftest import Backend, Gateway, eventually

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "user_buckets.json"


def _up(store: CatalogStore, backend: Backend, *, group: Group = Group.NORMAL,
        service: str = "shop") -> None:
    store.apply_event(event=event(EventType.UP, instance(backend.name, service=service, group=group,
                                                         ip="127.0.0.1", ports={"http": backend.port})))


def _down(store: CatalogStore, backend: Backend, *, group: Group = Group.NORMAL,
          service: str = "shop") -> None:
    store.apply_event(event=event(EventType.DOWN, instance(backend.name, service=service, group=group,
                                                           ip="127.0.0.1", ports={"http": backend.port})))


def _peers(gw: Gateway, key: str = "shop/dev", group: str = "normal") -> set[int]:
    upstream = gw.table()["upstreams"].get(key) or {}
    return {p["port"] for p in upstream.get(group) or []}


def _route(store: CatalogStore, host: str = "*", prefix: str = "/", service: str = "shop") -> None:
    store.create_route(host=host, path_prefix=prefix, service=service, env="dev")


def test_lua_bucket_agrees_with_python_on_the_shared_vectors(gateway: Gateway) -> None:
    vectors = json.loads(VECTORS.read_text())["vectors"]
    uids = [v["uid"] for v in vectors]
    answer = httpx.post(f"{gateway.admin}/bizcloud/bucket", content=json.dumps(uids), timeout=5).json()
    assert answer == [v["bucket"] for v in vectors] == [bucket(u) for u in uids]


def test_requests_follow_the_catalog_without_reloading_nginx(gateway: Gateway, store: CatalogStore,
                                                             backends: list[Backend]) -> None:
    a, b, c, _ = backends
    _up(store, a)
    _route(store)
    eventually(lambda: _peers(gateway) == {a.port}, what="the first peer")
    workers = gateway.worker_pids()
    assert httpx.get(f"{gateway.url}/x").json()["pod"] == a.name
    _up(store, b)          # scale up: the new pod gets traffic
    eventually(lambda: _peers(gateway) == {a.port, b.port}, what="scale-up")
    seen = {httpx.get(f"{gateway.url}/x").json()["pod"] for _ in range(10)}
    assert seen == {a.name, b.name}
    _down(store, a)        # a DOWN: no request reaches it afterwards
    eventually(lambda: _peers(gateway) == {b.port}, what="the DOWN")
    before = len(a.hits)
    for _ in range(20):
        assert httpx.get(f"{gateway.url}/x").json()["pod"] == b.name
    assert len(a.hits) == before
    _up(store, c)
    eventually(lambda: _peers(gateway) == {b.port, c.port}, what="another scale-up")
    assert gateway.worker_pids() == workers, "instance changes must not reload nginx"


def test_round_robin_carries_on_when_a_peer_joins_or_leaves(gateway: Gateway, store: CatalogStore,
                                                            backends: list[Backend]) -> None:
    """The rotation is not restarted by a change of the peer list: a peer that joins takes its
    turn at once (it goes last in the list, and a restart would have served all the others first),
    and the list's head gets no extra request per change."""
    a, b, c, _ = backends
    _up(store, a)
    _up(store, b)
    _route(store)
    eventually(lambda: _peers(gateway) == {a.port, b.port}, what="two peers")
    with httpx.Client(base_url=gateway.url) as client:   # one kept-alive connection: one worker's turn
        served = [client.get("/x").json()["pod"] for _ in range(4)]   # two full turns: at the end
        assert sorted(served) == sorted([a.name, b.name] * 2)
        _up(store, c)
        eventually(lambda: _peers(gateway) == {a.port, b.port, c.port}, what="the third peer")
        time.sleep(0.005)   # the worker's copy follows on its next clock tick
        after = [client.get("/x").json()["pod"] for _ in range(3)]
        assert sorted(after) == sorted([a.name, b.name, c.name]), "one turn each, the newcomer included"
        assert after[0] == c.name, "the rotation went on to the third place, where the newcomer is"
        _down(store, a)
        eventually(lambda: _peers(gateway) == {b.port, c.port}, what="a peer leaving")
        time.sleep(0.005)
        assert sorted(client.get("/x").json()["pod"] for _ in range(4)) == sorted([b.name, c.name] * 2)


def test_a_refused_connection_is_retried_on_another_peer_and_marked_down(
        gateway: Gateway, store: CatalogStore, backends: list[Backend]) -> None:
    a, b, _, _ = backends
    _up(store, a)
    _up(store, b)
    _route(store)
    eventually(lambda: len(_peers(gateway)) == 2, what="two peers")
    b.stop()               # the pod died but its DOWN has not arrived
    answers = [httpx.get(f"{gateway.url}/x") for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    assert {r.json()["pod"] for r in answers} == {a.name}
    metrics = httpx.get(f"{gateway.admin}/metrics").text
    assert 'bizcloud_gateway_upstream_errors_total{service="shop",env="dev",group="normal"}' in metrics
    errors = [line for line in metrics.splitlines()
              if line.startswith("bizcloud_gateway_upstream_errors_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in errors) <= 2, "passive down-marking stops retries"


def test_gray_split_is_sticky_proportional_and_honours_the_whitelist(
        gateway: Gateway, store: CatalogStore, backends: list[Backend]) -> None:
    normal, gray, _, _ = backends
    _up(store, normal)
    _up(store, gray, group=Group.GRAY)
    _route(store)
    store.set_gray(policy=GrayPolicyOut(service="shop", ratio=20, whitelist=("vip-1",)))
    eventually(lambda: gateway.table()["policies"].get("shop", {}).get("ratio") == 20, what="the policy")
    eventually(lambda: _peers(gateway, group="gray") == {gray.port}, what="the gray peer")
    groups = {}
    with httpx.Client(base_url=gateway.url) as client:
        for n in range(2000):
            uid = f"user-{n}"
            groups[uid] = client.get("/x", headers={"X-User-Id": uid}).json()["group"]
        share = sum(g == "gray" for g in groups.values()) / len(groups)
        assert abs(share - 0.20) <= 0.02
        assert all(g == ("gray" if bucket(u) < 2000 else "normal") for u, g in groups.items())
        for uid in ("user-1", "user-7", "user-42"):      # sticky
            assert {client.get("/x", headers={"X-User-Id": uid}).json()["group"] for _ in range(5)} == \
                {groups[uid]}
        assert bucket("vip-1") >= 2000
        assert all(client.get("/x", headers={"X-User-Id": "vip-1"}).json()["pod"] == gray.name
                   for _ in range(5))
        assert client.get("/x").json()["group"] == "normal"   # no user ID: never gray


def test_user_id_from_a_cookie_or_query_and_fallback_when_a_group_is_empty(
        gateway: Gateway, store: CatalogStore, backends: list[Backend]) -> None:
    normal = backends[0]
    _up(store, normal)
    _route(store)
    store.set_gray(policy=GrayPolicyOut(service="shop", ratio=100, uid_source=UidSource.COOKIE,
                                        uid_name="uid"))
    eventually(lambda: gateway.table()["policies"].get("shop", {}).get("uid_source") == "cookie",
               what="policy")
    answer = httpx.get(f"{gateway.url}/x", cookies={"uid": "u1"})
    assert answer.status_code == 200 and answer.headers["X-BizCloud-Group"] == "normal"  # fell back
    assert 'bizcloud_gateway_fallbacks_total{service="shop",env="dev",from="gray",to="normal"} 1' in \
        httpx.get(f"{gateway.admin}/metrics").text
    store.set_gray(policy=GrayPolicyOut(service="shop", ratio=100, fallback=False, uid_source=UidSource.QUERY,
                                        uid_name="user"))
    eventually(lambda: gateway.table()["policies"]["shop"]["uid_source"] == "query", what="policy")
    refused = httpx.get(f"{gateway.url}/x", params={"user": "u1"})
    assert refused.status_code == 503 and "no instance of shop in dev (gray)" in refused.text
    assert httpx.get(f"{gateway.url}/x").status_code == 200   # anonymous: normal


def test_bad_input_unknown_routes_and_malformed_pushes(gateway: Gateway, store: CatalogStore,
                                                       backends: list[Backend]) -> None:
    _up(store, backends[0])
    _route(store, host="shop.example", prefix="/api")
    eventually(lambda: bool(gateway.table()["routes"]), what="the route")
    ok = httpx.get(f"{gateway.url}/api/v1", headers={"Host": "shop.example"})
    assert ok.status_code == 200
    for host, path in (("other.example", "/api"), ("shop.example", "/apis"), ("shop.example", "/")):
        missing = httpx.get(f"{gateway.url}{path}", headers={"Host": host})
        assert missing.status_code == 404 and f"no route for host {host} path {path}" in missing.text
    before = gateway.table()
    bad_peer = '{"revision": 999, "upstreams": {"shop/dev": {"normal": [{"ip": "%s", "port": %d}]}}}'
    bad_route = '{"revision": 9, "routes": [{"host": "x", "path_prefix": "no", "service": "s", "env": "e"}]}'
    for body in ("not json", "[]", '{"revision": -1}', bad_peer % ("10.0.0.300", 80),
                 bad_peer % ("10.0.0.3", 0), bad_route,
                 '{"revision": 999, "policies": {"shop": {"ratio": 150}}}'):
        answer = httpx.post(f"{gateway.admin}/bizcloud/upstreams", content=body)
        assert answer.status_code == 400, body
        assert answer.json()["message"]
    after = gateway.table()
    assert (after["revision"], after["upstreams"], after["routes"]) == \
        (before["revision"], before["upstreams"], before["routes"])
    assert httpx.get(f"{gateway.url}/api/v1", headers={"Host": "shop.example"}).status_code == 200


def test_nginx_killed_is_restarted_with_the_catalogs_routes_before_its_first_answer(
        gateway: Gateway, store: CatalogStore, backends: list[Backend]) -> None:
    a = backends[0]
    _up(store, a)
    _route(store)
    eventually(lambda: _peers(gateway) == {a.port}, what="the peer")
    master = gateway.master_pid()
    os.killpg(master, signal.SIGKILL)
    answers = collections.Counter()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{gateway.url}/x", timeout=2)
        except httpx.TransportError:
            time.sleep(0.005)
            continue
        answers[answer.status_code] += 1
        if answers[200] >= 5:
            break
    assert gateway.master_pid() != master
    assert answers == {200: 5}, "every answer of the restarted nginx routes to the catalog's peer"


def test_metrics_count_requests_by_group_and_status(gateway: Gateway, store: CatalogStore,
                                                    backends: list[Backend]) -> None:
    _up(store, backends[0])
    _route(store)
    eventually(lambda: bool(_peers(gateway)), what="the peer")
    for _ in range(3):
        httpx.get(f"{gateway.url}/x")
    text = httpx.get(f"{gateway.admin}/metrics").text
    assert 'bizcloud_gateway_requests_total{service="shop",env="dev",group="normal",code="2xx"} 3' in text
    assert 'duration_seconds_count{service="shop",env="dev",group="normal"} 3' in text


def test_refusals_answer_plain_text_and_a_503_is_counted_for_its_group(
        gateway: Gateway, store: CatalogStore, backends: list[Backend]) -> None:
    _up(store, backends[0])
    _route(store, host="shop.example")
    store.set_gray(policy=GrayPolicyOut(service="shop", ratio=100, fallback=False, whitelist=("vip-1",)))
    eventually(lambda: gateway.table()["policies"].get("shop", {}).get("fallback") is False,
               what="the policy")
    eventually(lambda: bool(_peers(gateway)), what="the peer")
    with httpx.Client(base_url=gateway.url, headers={"Host": "shop.example"}) as client:
        for uid in ("vip-1", "u1"):   # whitelisted, and gray by its bucket (ratio 100): no gray instance
            refused = client.get("/x", headers={"X-User-Id": uid})
            assert refused.status_code == 503 and "no instance of shop in dev (gray)" in refused.text
            assert refused.headers["Content-Type"] == "text/plain"
            assert "X-BizCloud-Group" not in refused.headers
        assert client.get("/x").headers["X-BizCloud-Group"] == "normal"   # anonymous: normal, served
        missing = client.get("/x", headers={"Host": "other.example"})
        assert missing.status_code == 404 and missing.headers["Content-Type"] == "text/plain"
    text = httpx.get(f"{gateway.admin}/metrics").text
    assert 'bizcloud_gateway_requests_total{service="shop",env="dev",group="gray",code="5xx"} 2' in text
    assert 'bizcloud_gateway_requests_total{service="shop",env="dev",group="normal",code="2xx"} 1' in text
    assert "bizcloud_gateway_no_route_total 1" in text
