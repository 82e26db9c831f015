"""The config center's API on a real uvicorn server: writes need a user; refusals name their fields."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from tests.catalog.test_api import Server, server
from tests.configcenter.conftest import DEMO_API, DEMO_WEB, INVENTORY

__all__ = ["server"]  # the catalog's fixture: the real app on uvicorn, on this test's database
YAML = {"Content-Type": "text/yaml"}


@dataclass(frozen=True)
class Callers:
    ops: httpx.AsyncClient
    dev: httpx.AsyncClient     # developer "alice", owner of demo-web in the catalog
    viewer: httpx.AsyncClient
    nobody: httpx.AsyncClient


@pytest.fixture
async def callers(server: Server) -> AsyncIterator[Callers]:
    engine = make_engine(server.db_url)
    accounts = AccountStore(engine)
    tokens = {}
    for name, role in (("ops", Role.OPS), ("alice", Role.DEVELOPER), ("val", Role.VIEWER)):
        accounts.create_user(name=name, password=f"{name}-password", role=role)
        tokens[name] = accounts.issue_token(user=name)
    CatalogStore(engine).create_service(name="demo-web", owner="alice")
    CatalogStore(engine).create_service(name="demo-api", owner="bob")
    engine.dispose()

    def client(token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=server.base_url, timeout=30, headers=headers)

    async with client(tokens["ops"]) as ops, client(tokens["alice"]) as dev, \
            client(tokens["val"]) as viewer, client(None) as nobody:
        yield Callers(ops=ops, dev=dev, viewer=viewer, nobody=nobody)


async def test_upload_read_history_diff_delete(callers: Callers) -> None:
    ops = callers.ops
    first = await ops.put("/api/v1/configs", content=INVENTORY + "---\n" + DEMO_API, headers=YAML,
                          params={"comment": "first"})
    assert first.status_code == 200, first.text
    assert first.json()["results"] == [
        {"kind": "Inventory", "name": "inventory", "version": 1, "status": "created"},
        {"kind": "Service", "name": "demo-api", "version": 1, "status": "created"}]
    revision = first.json()["revision"]
    again = await ops.put("/api/v1/configs", content=DEMO_API, headers=YAML)
    assert again.json() == {"revision": revision, "results": [
        {"kind": "Service", "name": "demo-api", "version": 1, "status": "unchanged"}]}
    changed = await ops.put("/api/v1/configs", content=DEMO_API.replace("[SELECT, INSERT]", "[SELECT]"),
                            headers=YAML)
    assert changed.json()["results"][0]["version"] == 2

    listing = (await ops.get("/api/v1/configs")).json()
    assert [(c["name"], c["version"], c["author"]) for c in listing] == [("inventory", 1, "ops"),
                                                                         ("demo-api", 2, "ops")]
    current = (await ops.get("/api/v1/configs/demo-api")).json()
    assert current["yaml"].endswith("privileges: [SELECT]\n      roles: [master, slaves]\n")
    assert current["config"]["dependencies"]["mysql"][0]["privileges"] == ["SELECT"]
    v1 = (await ops.get("/api/v1/configs/demo-api/versions/1")).json()
    assert v1["yaml"] == DEMO_API and v1["comment"] == "first"
    diff = (await ops.get("/api/v1/configs/demo-api/diff", params={"from": 1, "to": 2})).json()
    assert diff["from"] == 1 and diff["to"] == 2 and "\n-    - INSERT\n" in diff["diff"]
    assert (await ops.get("/api/v1/configs/demo-api/diff")).json()["from"] == 1  # default: newest vs before

    deleted = await ops.delete("/api/v1/configs/demo-api", params={"comment": "retired"})
    assert deleted.status_code == 200 and deleted.json()["version"] == 3 and deleted.json()["deleted"]
    assert (await ops.get("/api/v1/configs/demo-api")).status_code == 404
    history = (await ops.get("/api/v1/configs/demo-api/versions")).json()
    assert [(v["version"], v["deleted"]) for v in history] == [(1, False), (2, False), (3, True)]
    for missing in ("/api/v1/configs/nothing", "/api/v1/configs/nothing/versions",
                    "/api/v1/configs/demo-api/versions/9", "/api/v1/configs/nothing/diff"):
        assert (await ops.get(missing)).status_code == 404, missing
    assert (await ops.delete("/api/v1/configs/demo-api")).status_code == 404


async def test_refusals_are_422_with_each_field_named(callers: Callers) -> None:
    await callers.ops.put("/api/v1/configs", content=INVENTORY, headers=YAML)
    bad = ("name: demo-x\nports: {http: 0}\ndependencies:\n  mysql:\n    - {cluster: nowhere, database: d, "
           "user: \"u'; DROP USER root; --\", privileges: [SELECT]}\n")
    answer = await callers.ops.put("/api/v1/configs", content=bad, headers=YAML)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail["message"] == "the config was refused"
    assert [p.split(":")[0] for p in detail["problems"]] == ["ports.http", "dependencies.mysql[0].user"]
    unknown = await callers.ops.put("/api/v1/configs", content=bad.replace("\"u'; DROP USER root; --\"", "u")
                                    .replace("http: 0", "http: 80"), headers=YAML)
    assert unknown.json()["detail"]["problems"] == [
        "dependencies.mysql[0].cluster: unknown MySQL cluster 'nowhere'; the inventory has: local"]
    syntax = await callers.ops.put("/api/v1/configs", content="name: a\nports: [\n", headers=YAML)
    assert syntax.status_code == 422 and syntax.json()["detail"]["problems"][0].startswith("line 3")
    as_json = await callers.ops.put("/api/v1/configs", json={"yaml": DEMO_API})
    assert as_json.status_code == 415
    empty = await callers.ops.put("/api/v1/configs", content="", headers=YAML)
    assert empty.status_code == 422
    assert (await callers.ops.get("/api/v1/configs")).json()[-1]["name"] == "inventory"  # nothing else stored


async def test_writes_need_a_user_and_the_right_one(callers: Callers) -> None:
    anonymous = await callers.nobody.put("/api/v1/configs", content=INVENTORY, headers=YAML)
    assert anonymous.status_code == 401
    assert (await callers.nobody.delete("/api/v1/configs/inventory")).status_code == 401
    assert (await callers.viewer.put("/api/v1/configs", content=INVENTORY, headers=YAML)).status_code == 403
    assert (await callers.nobody.get("/api/v1/configs")).json() == []  # reads are open; nothing was stored
    # A developer: not the inventory (ops'), not a service someone else owns; their own, or a new one.
    dev = callers.dev
    refused = await dev.put("/api/v1/configs", content=INVENTORY, headers=YAML)
    assert refused.status_code == 403 and "managed by ops" in refused.text
    await callers.ops.put("/api/v1/configs", content=INVENTORY, headers=YAML)
    assert (await dev.put("/api/v1/configs", content=DEMO_API, headers=YAML)).status_code == 403
    mine = await dev.put("/api/v1/configs", content=DEMO_WEB + "---\nname: brand-new\n", headers=YAML)
    assert mine.status_code == 200, mine.text
    assert (await dev.delete("/api/v1/configs/inventory")).status_code == 403
    assert (await dev.delete("/api/v1/configs/demo-web")).status_code == 200
    audit = (await callers.ops.get("/api/v1/audit")).json()
    rows = [(a["user"], a["action"], a["status"]) for a in audit]
    assert ("anonymous", "PUT /api/v1/configs", 401) in rows
    assert ("alice", "PUT /api/v1/configs", 403) in rows
    assert ("alice", "PUT /api/v1/configs", 200) in rows
    assert ("alice", "DELETE /api/v1/configs/demo-web", 200) in rows
    assert (await callers.nobody.get("/api/v1/configs/demo-web/versions")).json()[0]["author"] == "alice"


async def test_no_secret_is_stored_answered_or_logged(callers: Callers,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Hunter2"
    text = f"name: leaky\nresources:\n  dev:\n    env: {{DB_PASSWORD: {secret}, API_TOKEN: {secret}}}\n"
    answer = await callers.ops.put("/api/v1/configs", content=text, headers=YAML)
    assert answer.status_code == 422
    assert [p.split(":")[0] for p in answer.json()["detail"]["problems"]] == [
        "resources.dev.env.DB_PASSWORD", "resources.dev.env.API_TOKEN"]
    assert secret not in answer.text
    paths = ("/api/v1/configs", "/api/v1/audit", "/api/v1/graph")
    stored = [(await callers.ops.get(path)).text for path in paths]
    assert not any(secret in s for s in stored)
    assert secret not in caplog.text


async def test_graph_json_dot_and_one_service(callers: Callers) -> None:
    await callers.ops.put("/api/v1/configs", content=INVENTORY + "---\n" + DEMO_API + "---\n" + DEMO_WEB,
                          headers=YAML)
    whole = (await callers.nobody.get("/api/v1/graph")).json()
    assert whole["revision"] == 3
    assert {e["source"] + " -> " + e["target"] for e in whole["edges"]} >= {
        "service:demo-api -> mysql:local", "service:demo-web -> interface:io.bizcloud.demo.DemoApi"}
    one = (await callers.nobody.get("/api/v1/graph", params={"service": "demo-api"})).json()
    assert {n["id"] for n in one["nodes"]} == {"service:demo-api", "mysql:local"}
    dot = await callers.nobody.get("/api/v1/graph", params={"format": "dot", "service": "demo-web"})
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.startswith("digraph bizcloud {") and '"service:demo-web" -> "redis:cache"' in dot.text
    assert (await callers.nobody.get("/api/v1/graph", params={"service": "nobody"})).status_code == 404
    assert (await callers.nobody.get("/api/v1/graph", params={"format": "svg"})).status_code == 422
