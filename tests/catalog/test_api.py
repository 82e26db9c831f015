"""The REST API on a real uvicorn server, and the change stream woken by writes from another connection."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType, Group
from bizcloud.web.app import create_app
from tests.catalog.conftest import event, instance


@dataclass(frozen=True)
class Server:
    base_url: str
    db_url: str


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server on a free port (its base URL), stopped on exit."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    with serving(create_app(database_url=db_url)) as base_url:
        yield Server(base_url=base_url, db_url=db_url)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """Logged in as an ops user (mutations need a user since the console's accounts; reads do not)."""
    engine = make_engine(server.db_url)
    accounts = AccountStore(engine)
    accounts.create_user(name="ops", password="ops-password", role=Role.OPS)
    headers = {"Authorization": f"Bearer {accounts.issue_token(user='ops')}"}
    engine.dispose()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, headers=headers) as c:
        yield c


@pytest.fixture
def other_store(server: Server) -> Iterator[CatalogStore]:
    """A store on its own engine: the monitor's process, as far as the server can tell."""
    engine = make_engine(server.db_url)
    yield CatalogStore(engine)
    engine.dispose()


# --- plain routes ---------------------------------------------------------------------------------

async def test_service_crud(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/v1/services", json={"name": "demo-web", "owner": "team-a"})
    assert created.status_code == 201, created.text
    assert created.json()["owner"] == "team-a"
    assert (await client.post("/api/v1/services", json={"name": "demo-web"})).status_code == 409
    updated = await client.put("/api/v1/services/demo-web", json={"description": "the sample"})
    assert updated.json()["description"] == "the sample" and updated.json()["owner"] == "team-a"
    assert [s["name"] for s in (await client.get("/api/v1/services")).json()] == ["demo-web"]
    assert (await client.delete("/api/v1/services/demo-web")).status_code == 204
    assert (await client.get("/api/v1/services/demo-web")).status_code == 404
    assert (await client.put("/api/v1/services/demo-web", json={})).status_code == 404


@pytest.mark.parametrize("name", [
    pytest.param("Demo_Web", id="uppercase-underscore"),
    pytest.param("-web", id="leading-dash"),
    pytest.param("a" * 64, id="too-long"),
    pytest.param("", id="empty"),
])
async def test_a_bad_service_name_answers_422_naming_the_field(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("/api/v1/services", json={"name": name})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "name"]]


async def test_instances_environments_and_routes(client: httpx.AsyncClient,
                                                 other_store: CatalogStore) -> None:
    for inst in (instance("n1"), instance("g1", group=Group.GRAY), instance("q1", env="qa")):
        other_store.apply_event(event=event(EventType.UP, inst))
    listed = await client.get("/api/v1/services/demo-web/instances", params={"env": "dev", "group": "gray"})
    assert [(i["uid"], i["ports"], i["group"]) for i in listed.json()] == [("g1", {"http": 8080}, "gray")]
    assert (await client.get("/api/v1/services/nope/instances")).status_code == 404
    snap = (await client.get("/api/v1/instances", params={"service": "demo-web"})).json()
    assert snap["revision"] == 3 and len(snap["instances"]) == 3
    envs = (await client.get("/api/v1/environments")).json()
    assert [(e["name"], e["namespace"]) for e in envs] == [("dev", "bc-dev"), ("qa", "bc-qa")]
    route = {"host": "www.example.com", "path_prefix": "/", "service": "demo-web", "env": "dev"}
    assert (await client.post("/api/v1/routes", json=route)).status_code == 201
    assert (await client.post("/api/v1/routes", json=route)).status_code == 409
    assert (await client.post("/api/v1/routes", json={**route, "service": "ghost"})).status_code == 404
    assert [r["host"] for r in (await client.get("/api/v1/routes")).json()] == ["www.example.com"]
    assert (await client.delete("/api/v1/services/demo-web")).status_code == 409  # instances, route


async def test_openapi_metrics_and_health(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "BizCloud"
    for path in ("/api/v1/services", "/api/v1/services/{name}", "/api/v1/services/{name}/instances",
                 "/api/v1/environments", "/api/v1/routes", "/api/v1/changes", "/api/v1/instances"):
        assert path in spec["paths"], path
    assert (await client.get("/healthz")).json() == {"status": "ok", "revision": 0}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'bizcloud_http_request_duration_seconds_count{method="GET",route="/healthz"' in metrics.text


# --- the change stream ----------------------------------------------------------------------------

async def test_a_write_from_another_connection_wakes_a_waiting_client(
        client: httpx.AsyncClient, other_store: CatalogStore) -> None:
    other_store.apply_event(event=event(EventType.UP, instance("a")))
    waiting = asyncio.create_task(client.get("/api/v1/changes", params={"since": 1, "wait": 20}))
    await asyncio.sleep(0.5)
    assert not waiting.done()  # nothing after revision 1 yet: the request is held open
    revision = await asyncio.to_thread(other_store.apply_event, event=event(EventType.UP, instance("b")))
    committed = time.monotonic()
    response = await waiting
    latency = time.monotonic() - committed
    assert latency < 0.5, f"woken {latency:.3f}s after the commit"
    page = response.json()
    assert page["revision"] == page["next"] == revision == 2
    assert [(c["revision"], c["type"], c["uid"]) for c in page["changes"]] == [(2, "UP", "b")]
    assert page["changes"][0]["instance"]["ip"] == "10.88.0.5"


async def test_resuming_with_since_returns_exactly_the_missed_changes(
        client: httpx.AsyncClient, other_store: CatalogStore) -> None:
    other_store.apply_event(event=event(EventType.UP, instance("a")))
    seen = (await client.get("/api/v1/changes", params={"since": 0})).json()
    assert seen["next"] == 1
    # The client is away while three changes happen, one of them a replay that changes nothing.
    other_store.apply_event(event=event(EventType.UP, instance("b")))
    other_store.apply_event(event=event(EventType.UP, instance("b")))
    other_store.apply_event(event=event(EventType.CHANGED, instance("a", ports={"http": 9090})))
    other_store.apply_event(event=event(EventType.DOWN, instance("b")))
    first = (await client.get("/api/v1/changes", params={"since": seen["next"], "limit": 2})).json()
    assert [(c["revision"], c["type"]) for c in first["changes"]] == [(2, "UP"), (3, "CHANGED")]
    assert (first["more"], first["next"], first["revision"]) == (True, 3, 4)
    rest = (await client.get("/api/v1/changes", params={"since": first["next"], "limit": 2})).json()
    assert [(c["revision"], c["type"], c["uid"]) for c in rest["changes"]] == [(4, "DOWN", "b")]
    assert (rest["more"], rest["next"]) == (False, 4)


async def test_an_idle_wait_times_out_empty(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    page = (await client.get("/api/v1/changes", params={"since": 0, "wait": 0.3})).json()
    assert 0.25 < time.monotonic() - started < 2
    assert page == {"revision": 0, "next": 0, "more": False, "changes": []}


async def test_many_waiters_are_woken_by_one_change(client: httpx.AsyncClient,
                                                    other_store: CatalogStore) -> None:
    waiters = [asyncio.create_task(client.get("/api/v1/changes", params={"since": 0, "wait": 20}))
               for _ in range(20)]
    await asyncio.sleep(0.3)
    await asyncio.to_thread(other_store.apply_event, event=event(EventType.UP, instance("a")))
    pages = await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
    assert {tuple(c["revision"] for c in p.json()["changes"]) for p in pages} == {(1,)}


async def test_a_since_ahead_of_the_catalog_answers_410(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/changes", params={"since": 99})
    assert response.status_code == 410
    assert "snapshot" in response.json()["detail"]


async def test_each_request_logs_one_json_line(client: httpx.AsyncClient,
                                               caplog: pytest.LogCaptureFixture) -> None:
    def lines() -> list[dict[str, object]]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "bizcloud.web.access"]

    with caplog.at_level(logging.INFO, logger="bizcloud.web.access"):
        await client.get("/api/v1/services/nope")
        for _ in range(100):  # the server logs after the response is sent, in its own thread
            if lines():
                break
            await asyncio.sleep(0.01)
    [line] = lines()
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "GET", "/api/v1/services/nope", "/api/v1/services/{name}", 404)
