"""The web tests' shared fixtures: the real app on uvicorn over a migrated database (the catalog's
``server``), and one signed-in HTTP client per user, made with a real account and token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine
from tests.catalog.conftest import db_url
from tests.catalog.test_api import Server, server

__all__ = ["db_url", "server", "signed_in"]


@contextlib.asynccontextmanager
async def signed_in(server: Server, users: dict[str, Role]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per user name, each carrying that user's bearer token (users made here)."""
    engine = make_engine(server.db_url)
    accounts = AccountStore(engine)
    tokens = {}
    for name, role in users.items():
        accounts.create_user(name=name, password=f"{name}-password", role=role)
        tokens[name] = accounts.issue_token(user=name)
    engine.dispose()
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(
                   httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}))
               for name, token in tokens.items()}
