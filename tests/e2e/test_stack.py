"""`make up` end to end: the whole two-layer sample answers through the gateway.

gateway (nginx + Lua, routes from the catalog) -> demo-web (access layer) -> BizCloud's SOA SDK
(providers that the registry writer put into ZooKeeper from the monitor's events) -> demo-api.
This is `stack.up` itself on the default cluster and ports, as `make up` runs it; it leaves the
stack running, and the session's cluster fixture stops everything if it started the cluster.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bizcloud import stack
from bizcloud.settings import Settings
from tests.e2e.conftest import cli, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def endpoints(real_cluster: Settings) -> dict[str, Any]:
    return stack.up(real_cluster, step=lambda _: None)


def _through_gateway(url: str, uid: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url}/", headers={"X-User-Id": uid}, timeout=5)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return body if "backend" in body else None


def test_a_request_crosses_both_layers(endpoints: dict[str, Any]) -> None:
    gateway = endpoints["gateway"]["url"]
    body = wait_for(lambda: _through_gateway(gateway, "42"), timeout=60,
                    what="an answer from demo-web that carries demo-api's answer")
    assert (body["service"], body["env"]) == ("demo-web", "dev")
    backend = body["backend"]
    assert (backend["service"], backend["interface"], backend["uid"]) == (
        "demo-api", "io.bizcloud.demo.DemoApi", "42")
    providers = json.loads(cli("soa", "providers", "io.bizcloud.demo.DemoApi", "--json").stdout)["providers"]
    assert f"{backend['ip']}:20880" in {p["address"] for p in providers}


def _with_greeting(url: str) -> dict[str, Any] | None:
    body = _through_gateway(url, "7")
    return body if body and "greeting" in body["backend"].get("db", {}) else None


def test_the_backend_reads_its_database_with_its_own_account(endpoints: dict[str, Any]) -> None:
    gateway = endpoints["gateway"]["url"]
    body = wait_for(lambda: _with_greeting(gateway), timeout=60,
                    what="demo-api's answer with the greeting from the replica")
    backend = body["backend"]
    assert backend["db"] == {"greeting": "hello from MariaDB", "server": "replica", "user": "demo_api"}
    held = json.loads(cli("grants", "--ip", backend["ip"], "--json").stdout)["grants"]
    assert {(g["kind"], g["grant"], g["state"]) for g in held} == {
        ("mysql", "demo_api INSERT,SELECT ON demo.*", "applied")}
    assert len(held) == 2  # the master and the replica
    why = cli("grants", "--ip", backend["ip"], "--why").stdout
    assert "of service demo-api in dev declares dependencies.mysql[0]" in why


def test_status_names_every_component(endpoints: dict[str, Any]) -> None:
    data = json.loads(cli("status", "--json").stdout)
    for name in ("server", "monitor", "gateway", "zookeeper", "mariadb"):
        assert data[name]["running"] is True, name
    assert data["console"]["url"].endswith("/console/")
