"""What the catalog adds for the gateway: gray policies, ROUTE/GRAY changes, refused addresses."""

from __future__ import annotations

import httpx
import pytest

from bizcloud.catalog.policies import ConfigChange, GrayPolicyOut, UidSource, invalid_address
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType
from tests.catalog.conftest import event, instance


@pytest.mark.parametrize(("ip", "ports", "why"), [
    ("10.88.0.5", {"http": 8080}, None),
    ("fd00::5", {"http": 8080, "soa": 20880}, None),
    ("10.88.0.500", {"http": 8080}, "not an IP address"),
    ("10.88.0.5; drop", {"http": 8080}, "not an IP address"),
    (None, {"http": 8080}, "not an IP address"),
    ("010.88.0.5", {"http": 8080}, "not an IP address"),      # a leading zero: octal to some readers
    ("10.88.0", {"http": 8080}, "not an IP address"),
    (" 10.88.0.5", {"http": 8080}, "not an IP address"),
    ("fe80::5%eth0", {"http": 8080}, "not an IP address"),    # a zone index means nothing to a gateway
    ("10.88.0.5\x00", {"http": 8080}, "not an IP address"),
    ("10.88.0.5", {"http": 0}, "not TCP ports"),
    ("10.88.0.5", {"http": 70000}, "not TCP ports"),
])
def test_invalid_addresses_are_named(ip: str | None, ports: dict[str, int], why: str | None) -> None:
    found = invalid_address(instance(ip=ip, ports=ports))
    assert (found is None) if why is None else (found is not None and why in found)


def test_an_instance_with_a_bad_address_is_refused_and_a_known_one_removed(store: CatalogStore) -> None:
    assert store.apply_event(event=event(EventType.UP, instance(ip="not-an-ip"))) is None
    assert store.instances() == []
    assert store.apply_event(event=event(EventType.UP, instance())) is not None
    rev = store.apply_event(event=event(EventType.CHANGED, instance(ports={"http": 99999})))
    assert rev is not None and store.instances() == []
    assert store.changes_since(revision=rev - 1)[0].type is EventType.DOWN


def test_gray_policy_defaults_then_set_announces_a_gray_change(store: CatalogStore) -> None:
    store.create_service(name="shop")
    assert store.get_gray(service="shop") == GrayPolicyOut(service="shop")
    before = store.latest_revision()
    stored = store.set_gray(policy=GrayPolicyOut(service="shop", ratio=20, whitelist=("u2", "u1", "u1"),
                                                 uid_source=UidSource.COOKIE, uid_name="uid"))
    assert stored.whitelist == ("u1", "u2") and stored.split().group_for("u1") == "gray"
    [change] = store.changes_since(revision=before)
    assert (change.type, change.service, change.group) == (ConfigChange.GRAY, "shop", None)
    assert change.instance == {"service": "shop", "ratio": 20.0, "whitelist": ["u1", "u2"], "fallback": True,
                               "uid_source": "cookie", "uid_name": "uid"}
    assert store.list_gray() == [stored]


def test_routes_added_and_removed_are_on_the_stream(store: CatalogStore) -> None:
    store.create_service(name="shop")
    store.create_environment(name="dev")
    route = store.create_route(host="*", path_prefix="/shop", service="shop", env="dev")
    store.delete_route(route_id=route.id)
    added, removed = store.changes_since(revision=0)
    assert (added.type, added.instance["host"]) == (ConfigChange.ROUTE, "*")
    assert "deleted" not in added.instance
    assert (removed.type, removed.instance["deleted"]) == (ConfigChange.ROUTE, True)


async def test_gray_api_validates_and_round_trips(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/services", json={"name": "shop"})).status_code == 201
    got = await client.get("/api/v1/services/shop/gray")
    assert got.status_code == 200 and got.json()["ratio"] == 0 and got.json()["uid_name"] == "X-User-Id"
    for bad, field in (({"ratio": 101}, "ratio"), ({"uid_source": "body"}, "uid_source"),
                       ({"uid_name": "X User"}, "uid_name"), ({"ratios": 5}, "ratios")):
        answer = await client.put("/api/v1/services/shop/gray", json=bad)
        assert answer.status_code == 422 and field in answer.text
    put = await client.put("/api/v1/services/shop/gray", json={"ratio": 12.5, "whitelist": ["vip"]})
    assert put.status_code == 200 and put.json()["whitelist"] == ["vip"]
    assert [p["service"] for p in (await client.get("/api/v1/gray")).json()] == ["shop"]
    assert (await client.get("/api/v1/services/nope/gray")).status_code == 404
    page = (await client.get("/api/v1/changes", params={"since": 0})).json()
    assert [(c["type"], c["group"]) for c in page["changes"]] == [("GRAY", None)]
