"""Who may release what: the release routes' permission check (the web layer's side).

``AuditGuard`` has already refused anonymous callers and viewers. A route on one service in one
environment (``/api/v1/release/{service}/{env}/…``, gray routes included) is a deploy — or a
scale — of that service there: its owners may, outside production, and ops anywhere, through the
same ``decide`` as every other check. Whole environments (``env create|delete``) are the
platform's: ops.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from bizcloud.accounts.roles import Action
from bizcloud.catalog.store import CatalogStore
from bizcloud.web.auth import MUTATING, AccountsDep, check, require_user, service_owners


async def guard_release(request: Request, accounts: AccountsDep) -> None:
    if request.method not in MUTATING:
        return
    user = await require_user(request, accounts)
    service = request.path_params.get("service")
    env = request.path_params.get("env")
    if service is None or env is None:
        check(request, user, Action.MANAGE_PLATFORM)
        return
    catalog: CatalogStore = request.app.state.catalog_store
    owners = await asyncio.to_thread(service_owners, catalog, str(service))
    action = Action.SCALE if request.url.path.endswith("/scale") else Action.DEPLOY
    check(request, user, action, service=str(service), env=str(env), owners=owners)
