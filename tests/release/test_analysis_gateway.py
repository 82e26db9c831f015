"""Analysis against a real gateway (nginx + Lua stats) in front of a healthy normal and a broken gray backend.

Set ``BIZCLOUD_CAPTURE_STATS=DIR`` to keep the two scrapes (that is how ``data/gateway_gray_*.prom``
were made).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bizcloud.catalog.policies import GrayPolicyOut
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType, Group
from bizcloud.release.analysis import Outcome, Thresholds, parse, verdict, window
from bizcloud.usersplit import bucket
from tests.catalog.conftest import db_url, engine, event, instance, store  # noqa: F401
from tests.catalog.test_api import Server, server  # noqa: F401
from tests.gateway.conftest import Backend, Gateway, eventually, running_gateway, start_backend

GATEWAY_PORT, ADMIN_PORT = 18870, 18871   # this suite's range: 18870-18879


@pytest.fixture
def gateway(server: Server, tmp_path: Path) -> Iterator[Gateway]:  # noqa: F811
    with running_gateway(server.base_url, tmp_path / "gw", port=GATEWAY_PORT, admin_port=ADMIN_PORT) as gw:
        yield gw


def _up(store: CatalogStore, backend: Backend, group: Group) -> None:  # noqa: F811
    store.apply_event(event=event(EventType.UP, instance(backend.name, service="shop", group=group,
                                                         ip="127.0.0.1", ports={"http": backend.port})))


def test_a_failing_gray_group_fails_its_analysis_and_the_normal_one_passes(
        gateway: Gateway, store: CatalogStore) -> None:  # noqa: F811
    normal, gray = start_backend("normal-1"), start_backend("gray-1")
    gray.status, gray.delay_s = 500, 0.03
    try:
        _up(store, normal, Group.NORMAL)
        _up(store, gray, Group.GRAY)
        store.create_route(host="*", path_prefix="/", service="shop", env="dev")
        store.set_gray(policy=GrayPolicyOut(service="shop", ratio=50))
        eventually(lambda: gateway.table()["policies"].get("shop", {}).get("ratio") == 50, what="the policy")
        eventually(lambda: bool((gateway.table()["upstreams"].get("shop/dev") or {}).get("gray")),
                   what="the gray peer")
        with httpx.Client(base_url=gateway.url) as client:
            client.get("/", headers={"X-User-Id": "warm-up"})
            first = httpx.get(f"{gateway.admin}/metrics").text
            for n in range(200):
                client.get("/", headers={"X-User-Id": f"user-{n}"})
        last = httpx.get(f"{gateway.admin}/metrics").text
    finally:
        normal.stop()
        gray.stop()
    if capture := os.environ.get("BIZCLOUD_CAPTURE_STATS"):
        Path(capture, "gateway_gray_start.prom").write_text(first)
        Path(capture, "gateway_gray_end.prom").write_text(last)
    start, end = parse(first), parse(last)
    bad = window(start, end, service="shop", env="dev", group="gray")
    good = window(start, end, service="shop", env="dev", group="normal")
    assert bad.requests + good.requests == 200
    assert bad.requests == sum(bucket(f"user-{n}") < 5000 for n in range(200))   # exactly the gray users
    assert bad.errors_5xx == bad.requests and good.errors_5xx == 0
    assert bad.p99_ms is not None and bad.p99_ms >= 25           # every gray answer took 30 ms or more
    failed = verdict(bad, Thresholds())
    assert failed.outcome is Outcome.FAIL and "error rate 100.00%" in failed.reason
    assert verdict(good, Thresholds(max_p99_ms=5000)).outcome is Outcome.OK
