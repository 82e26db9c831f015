"""Who may release what: the release routes' permission check (the web layer's side).

``AuditGuard`` has already refused anonymous callers and viewers. A route on one service in one
environment (``/api/v1/release/{service}/{env}/…``, gray routes included) is a deploy — or a
scale — of that service there: its owners may, outside production, and ops anywhere, through the
same ``decide`` as every other check. A one-click environment (``env create|delete``) is a test
environment: developers may make and remove any but a production one (the release side removes
only environments ``env create`` made). ``release_decisions`` asks the same question ahead of
time, so the console shows a deploy or scale button only where the API would let it through, and
says why not elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request

from bizcloud.accounts.roles import Action, Decision, decide
from bizcloud.accounts.store import UserOut
from bizcloud.catalog.store import CatalogStore
from bizcloud.web.auth import MUTATING, AccountsDep, check, require_user, service_owners


async def guard_release(request: Request, accounts: AccountsDep) -> None:
    if request.method not in MUTATING:
        return
    user = await require_user(request, accounts)
    service = request.path_params.get("service")
    env = request.path_params.get("env")
    if service is None or env is None:
        name = request.path_params.get("name")
        if name is None and request.url.path.endswith("/environments"):
            name = await _body_name(request)
        check(request, user, Action.TEST_ENVIRONMENT if name else Action.MANAGE_PLATFORM,
              env=str(name) if name else None)
        return
    catalog: CatalogStore = request.app.state.catalog_store
    owners = await asyncio.to_thread(service_owners, catalog, str(service))
    action = Action.SCALE if request.url.path.endswith("/scale") else Action.DEPLOY
    check(request, user, action, service=str(service), env=str(env), owners=owners)


async def _body_name(request: Request) -> str | None:
    """The new environment's name from ``POST /environments`` (the route validates it again)."""
    try:
        body = await request.json()
    except ValueError:
        return None
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class EnvironmentDecisions:
    env: str
    deploy: Decision
    scale: Decision


def release_decisions(*, user: UserOut, service: str, envs: Iterable[str], owners: frozenset[str],
                      production_envs: frozenset[str]) -> list[EnvironmentDecisions]:
    """What ``guard_release`` would answer ``user`` for a deploy and a scale of ``service`` in each
    environment, sorted by name. Purely computational."""
    def one(env: str, action: Action) -> Decision:
        return decide(user=user.name, role=user.role, action=action, service=service, env=env, owners=owners,
                      production_envs=production_envs)
    return [EnvironmentDecisions(env, one(env, Action.DEPLOY), one(env, Action.SCALE))
            for env in sorted(set(envs))]
