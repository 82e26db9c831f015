"""A service's console page shows its deploy history and its gray release, with controls only for
those the API would let release it (the real app on uvicorn, on a migrated database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bizcloud.accounts.roles import Role
from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.release import gray_plan
from bizcloud.release.store import ReleaseStore
from tests.catalog.test_api import Server
from tests.web.conftest import signed_in


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with signed_in(server, {"olga": Role.OPS, "vera": Role.VIEWER}) as users:
        engine = make_engine(server.db_url)
        CatalogStore(engine).create_service(name="shop", owner="dev1")
        releases = ReleaseStore(engine)
        entry = releases.record(service="shop", env="qa", action="deploy", user="olga",
                                detail={"image": "shop:v1"})
        releases.finish(entry, outcome="failed",
                        message="rollout of Deployment bc-qa/shop failed: ErrImagePull")
        state, _ = gray_plan.start(None, service="shop", env="qa", image="shop:v2", release="v2",
                                   base_image="shop:v1", base_release="v1", replicas=4,
                                   now=datetime.now(UTC), user="olga", ratio=25)
        releases.put_gray(state)
        engine.dispose()
        yield {"ops": users["olga"], "viewer": users["vera"]}


async def test_the_service_page_shows_history_and_gray_with_controls_for_ops(
        clients: dict[str, httpx.AsyncClient]) -> None:
    page = (await clients["ops"].get("/console/services/shop")).text
    assert "ErrImagePull" in page and ">deploy<" in page and ">failed<" in page
    assert "shop:v2 (release v2) for 25.0 % of users" in page
    assert 'data-action="promote"' in page and 'data-action="rollback"' in page


async def test_a_viewer_sees_the_same_without_controls(clients: dict[str, httpx.AsyncClient]) -> None:
    page = (await clients["viewer"].get("/console/services/shop")).text
    assert "shop:v2 (release v2)" in page and "ErrImagePull" in page
    assert 'data-action="promote"' not in page
