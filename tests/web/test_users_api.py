"""Users over the API on a real uvicorn server: admins manage users, and the last admin stays an admin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bizcloud.accounts.roles import Role
from tests.catalog.test_api import Server
from tests.web.conftest import signed_in


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """One client per user: ``root`` (the only admin), ``olga`` (ops)."""
    async with signed_in(server, {"root": Role.ADMIN, "olga": Role.OPS}) as users:
        yield users


async def test_the_last_admin_cannot_demote_disable_or_delete_themself(
        clients: dict[str, httpx.AsyncClient]) -> None:
    root = clients["root"]
    for change in ({"role": "ops"}, {"role": "viewer"}, {"disabled": True}):
        refused = await root.put("/api/v1/users/root", json=change)
        assert refused.status_code == 409, refused.text
        assert "'root' is the last enabled admin" in refused.json()["detail"]
        assert "make another user admin first" in refused.json()["detail"]
    refused = await root.delete("/api/v1/users/root")
    assert refused.status_code == 409 and "cannot delete" in refused.json()["detail"]
    assert (await root.get("/api/v1/auth/whoami")).json()["role"] == "admin"  # nothing changed
    # The refusals are in the audit trail, with their status.
    audit = (await root.get("/api/v1/audit", params={"who": "root"})).json()
    assert {(a["action"], a["status"]) for a in audit} >= {("PUT /api/v1/users/root", 409),
                                                            ("DELETE /api/v1/users/root", 409)}
    # With a second admin, the first may step down; then the second is the last one.
    assert (await root.put("/api/v1/users/olga", json={"role": "admin"})).status_code == 200
    assert (await root.put("/api/v1/users/root", json={"role": "ops"})).json()["role"] == "ops"
    olga = clients["olga"]
    assert (await olga.delete("/api/v1/users/olga")).status_code == 409
    assert (await olga.delete("/api/v1/users/root")).status_code == 204
    assert [u["name"] for u in (await olga.get("/api/v1/users")).json()] == ["olga"]
    assert (await root.get("/api/v1/auth/whoami")).status_code == 401  # root's token went with root


async def test_only_an_admin_manages_users(clients: dict[str, httpx.AsyncClient]) -> None:
    olga = clients["olga"]
    assert (await olga.post("/api/v1/users", json={"name": "eve", "role": "admin"})).status_code == 403
    assert (await olga.put("/api/v1/users/root", json={"role": "viewer"})).status_code == 403
    assert (await olga.delete("/api/v1/users/root")).status_code == 403
    assert (await olga.post("/api/v1/users/root/tokens", json={})).status_code == 403
    assert (await clients["root"].delete("/api/v1/users/nobody")).status_code == 404
