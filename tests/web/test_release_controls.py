"""The service page's deploy and scale controls: one section per environment the service can be
released to, its buttons enabled only where the release guard would let the user through, and the
guard's reason in the tooltip where not (the real app on uvicorn, on a migrated database).

Clicking them against a real cluster is ``tests/e2e/test_console_release.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import UserOut
from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.configcenter.store import ConfigStore
from bizcloud.web.release_guard import release_decisions
from tests.catalog.conftest import db_url
from tests.catalog.test_api import Server, server
from tests.e2e.console_fixtures import create_users

__all__ = ["db_url", "server"]

SHOP = """
kind: Service
name: shop
type: stateless
image: shop:v1
ports: {http: 8080}
resources:
  qa: {replicas: 1, cpu: 20m, memory: 64Mi}
  prod: {replicas: 3, cpu: 100m, memory: 128Mi}
"""
PRODUCTION = frozenset({"prod"})


def _user(name: str, role: Role) -> UserOut:
    return UserOut(name=name, role=role, disabled=False, created_at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(("name", "role", "allowed"), [
    pytest.param("olga", Role.OPS, {"prod", "qa"}, id="ops-everywhere"),
    pytest.param("dev1", Role.DEVELOPER, {"qa"}, id="owner-outside-production"),
    pytest.param("dev2", Role.DEVELOPER, set(), id="developer-not-owner"),
    pytest.param("vera", Role.VIEWER, set(), id="viewer-never"),
])
def test_release_decisions_follow_the_guard(name: str, role: Role, allowed: set[str]) -> None:
    decisions = release_decisions(user=_user(name, role), service="shop", envs=["qa", "prod", "qa"],
                                  owners=frozenset({"dev1"}), production_envs=PRODUCTION)
    assert [d.env for d in decisions] == ["prod", "qa"]
    assert {d.env for d in decisions if d.deploy.allowed} == allowed
    assert {d.env for d in decisions if d.scale.allowed} == allowed


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    tokens = create_users(server.db_url, {"olga": Role.OPS, "dev1": Role.DEVELOPER, "vera": Role.VIEWER})
    engine = make_engine(server.db_url)
    CatalogStore(engine).create_service(name="shop", owner="dev1")
    ConfigStore(engine).apply(SHOP, author="test")
    engine.dispose()
    made = {name: httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"})
            for name, token in tokens.items()}
    yield made
    for c in made.values():
        await c.aclose()


def _buttons(page: str, env: str) -> dict[str, tuple[bool, str]]:
    """name -> (disabled, tooltip) of the buttons in one environment's section."""
    opening = f'<section class="release" data-service="shop" data-env="{env}">'
    section = re.search(rf"{re.escape(opening)}(.*?)</section>", page, re.S)
    assert section, f"no section for {env}"
    return {m["name"]: (m["disabled"] is not None, m["title"]) for m in re.finditer(
        r'<button type="\w+" name="(?P<name>[\w-]+)" title="(?P<title>[^"]*)"(?P<disabled> disabled)?>',
        section.group(1))}


async def test_an_owner_may_release_outside_production_and_is_told_why_not_in_it(
        clients: dict[str, httpx.AsyncClient]) -> None:
    page = (await clients["dev1"].get("/console/services/shop")).text
    prod, qa = _buttons(page, "prod"), _buttons(page, "qa")
    assert set(prod) == set(qa) == {"deploy", "dry-run", "scale"}
    assert all(disabled and "may not" in title and "production environment prod" in title
               for disabled, title in prod.values())
    # qa: allowed by the guard; the buttons work when this server has a cluster, and say so when not.
    allowed = "dev1 owns shop; qa is not production"
    assert all(title == allowed or "no cluster" in title for _, title in qa.values())


async def test_a_viewer_sees_the_sections_with_every_button_disabled(
        clients: dict[str, httpx.AsyncClient]) -> None:
    page = (await clients["vera"].get("/console/services/shop")).text
    for env in ("prod", "qa"):
        buttons = _buttons(page, env).values()
        assert all(disabled and title == "a viewer may only read" for disabled, title in buttons)
    refused = await clients["vera"].post("/api/v1/release/shop/qa/deploy", json={})
    assert refused.status_code == 403 and refused.json()["detail"] == "a viewer may only read"


async def test_ops_may_release_everywhere(clients: dict[str, httpx.AsyncClient]) -> None:
    page = (await clients["olga"].get("/console/services/shop")).text
    for env in ("prod", "qa"):
        assert all(title.startswith("ops may") or "no cluster" in title
                   for _, title in _buttons(page, env).values())
