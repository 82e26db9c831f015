"""Who may make a one-click environment: a developer any test one, never a production one; a
viewer none (the real app on uvicorn, on a migrated database with no configs, so an allowed
request gets past the guard and is refused by the release side for what is missing)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bizcloud.accounts.roles import Role
from tests.catalog.test_api import Server
from tests.web.conftest import signed_in


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with signed_in(server, {"dina": Role.DEVELOPER, "vera": Role.VIEWER}) as users:
        yield {"developer": users["dina"], "viewer": users["vera"]}


async def test_a_developer_may_make_and_remove_a_test_environment(
        clients: dict[str, httpx.AsyncClient]) -> None:
    created = await clients["developer"].post("/api/v1/release/environments",
                                              json={"name": "qa-42", "source": "dev"})
    deleted = await clients["developer"].delete("/api/v1/release/environments/qa-42")
    # Past the guard, the release side answers: 400 naming what is missing (no config has
    # parameters for 'dev' in this empty config center; no namespace bc-qa-42), or 503 when no
    # cluster runs. Never 403.
    for answer in (created, deleted):
        assert answer.status_code in {400, 503}, answer.text
    assert "environment 'dev'" in created.text or created.status_code == 503
    assert "bc-qa-42" in deleted.text or deleted.status_code == 503


@pytest.mark.parametrize("name", ["prod", "production"])
async def test_never_a_production_one(clients: dict[str, httpx.AsyncClient], name: str) -> None:
    created = await clients["developer"].post("/api/v1/release/environments",
                                              json={"name": name, "source": "dev"})
    deleted = await clients["developer"].delete(f"/api/v1/release/environments/{name}")
    for answer in (created, deleted):
        assert answer.status_code == 403
        detail = answer.json()["detail"]
        assert detail == f"a developer may not create or delete production environment {name}"


async def test_a_viewer_none(clients: dict[str, httpx.AsyncClient]) -> None:
    created = await clients["viewer"].post("/api/v1/release/environments",
                                           json={"name": "qa-1", "source": "dev"})
    assert created.status_code == 403


async def test_a_body_without_a_name_is_judged_as_the_platform_and_refused(
        clients: dict[str, httpx.AsyncClient]) -> None:
    created = await clients["developer"].post("/api/v1/release/environments", content=b"not json")
    assert created.status_code == 403 and "ops" in created.json()["detail"]
