"""Who is calling, may they, and the audit row that says so: the web layer's side of accounts.

Every request that could change something (POST, PUT, PATCH, DELETE under /api/) passes
``AuditGuard`` first: it finds the user from the console's session cookie or an
``Authorization: Bearer`` token, answers 401 when there is none and 403 for a viewer (the floor
that holds for routes added later), and records one audit row with the final status whatever
happened. Routes then ask ``bizcloud.accounts.roles.decide`` for the finer rules (ownership,
production environments) through ``guard_catalog`` or their own check. GET reads stay open,
so the gateway's syncer and the SOA tools read the catalog without credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http.cookies import SimpleCookie
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bizcloud.accounts.errors import BadCredentials
from bizcloud.accounts.roles import Action, Decision, Role, decide, owners_of
from bizcloud.accounts.store import AccountStore, UserOut
from bizcloud.catalog.errors import CatalogError
from bizcloud.catalog.store import CatalogStore

SESSION_COOKIE = "bizcloud_session"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_MUTATIONS = frozenset({"/api/v1/auth/login", "/api/v1/auth/logout"})  # they audit themselves

log = logging.getLogger("bizcloud.web.auth")


def get_accounts(request: Request) -> AccountStore:
    store = getattr(request.app.state, "account_store", None)
    if not isinstance(store, AccountStore):
        raise RuntimeError("app.state.account_store is not set (is the app's lifespan running?)")
    return store


AccountsDep = Annotated[AccountStore, Depends(get_accounts)]


def credential(headers: dict[str, str]) -> str | None:
    """The bearer token, else the session cookie, from lower-cased headers. Purely computational."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no credential, not a 500
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel and morsel.value else None


def scope_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def authenticate(accounts: AccountStore, headers: dict[str, str]) -> UserOut | None:
    token = credential(headers)
    if token is None:
        return None
    try:
        return await asyncio.to_thread(accounts.authenticate, token=token)
    except BadCredentials:
        return None


def current_user(request: Request) -> UserOut | None:
    user = getattr(request.state, "user", None)
    return user if isinstance(user, UserOut) else None


async def require_user(request: Request, accounts: AccountsDep) -> UserOut:
    """The logged-in user (401 otherwise); reads use it where the answer is not public."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    user = current_user(request) or await authenticate(accounts, headers)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in, or send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.user = user
    return user


UserDep = Annotated[UserOut, Depends(require_user)]


def production_envs(conn: HTTPConnection) -> frozenset[str]:
    envs = getattr(conn.app.state, "production_envs", None)
    return envs if isinstance(envs, frozenset) else frozenset({"prod", "production"})


def check(request: Request, user: UserOut, action: Action, *, service: str | None = None,
          env: str | None = None, owners: frozenset[str] = frozenset()) -> Decision:
    """``decide`` for this request; 403 with the reason when refused (the audit row keeps it)."""
    decision = decide(user=user.name, role=user.role, action=action, service=service, env=env, owners=owners,
                      production_envs=production_envs(request))
    request.state.decision = decision.reason
    if not decision.allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, decision.reason)
    return decision


def service_owners(catalog: CatalogStore, service: str) -> frozenset[str]:
    try:
        return owners_of(catalog.get_service(name=service).owner)
    except CatalogError:
        return frozenset()


async def guard_catalog(request: Request, accounts: AccountsDep) -> None:
    """The catalog router's rule: create a service (developer+), edit one you own, the rest is ops."""
    if request.method not in MUTATING:
        return
    user = await require_user(request, accounts)
    route = getattr(request.scope.get("route"), "path", "")
    if route == "/api/v1/services" and request.method == "POST":
        check(request, user, Action.CREATE_SERVICE)
    elif route == "/api/v1/services/{name}":
        name = str(request.path_params.get("name", ""))
        catalog: CatalogStore = request.app.state.catalog_store
        owners = await asyncio.to_thread(service_owners, catalog, name)
        check(request, user, Action.EDIT_SERVICE, service=name, owners=owners)
    else:
        check(request, user, Action.MANAGE_PLATFORM)


class AuditGuard:
    """401 without a user, 403 for a viewer, and one audit row per mutating API request."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api_write = scope["type"] == "http" and scope["method"] in MUTATING
        if not (api_write and scope["path"].startswith("/api/")):
            await self._app(scope, receive, send)
            return
        accounts: AccountStore = scope["app"].state.account_store
        state = scope.setdefault("state", {})
        user = await authenticate(accounts, scope_headers(scope))
        if user is not None:
            state["user"] = user
        path = scope["path"]
        client = scope.get("client")
        action = f"{scope['method']} {path}"[:64]
        status_code = 500

        async def noting(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            if path in OPEN_MUTATIONS:
                await self._app(scope, receive, noting)
            elif user is None:
                await _refuse(noting, 401, "log in, or send Authorization: Bearer <token>")
            elif user.role is Role.VIEWER:
                state["decision"] = "a viewer may only read"
                await _refuse(noting, 403, "a viewer may only read")
            else:
                await self._app(scope, receive, noting)
        finally:
            who = state.get("user")
            name = who.name if isinstance(who, UserOut) else str(state.get("login_name") or "anonymous")
            detail = {"reason": state["decision"]} if state.get("decision") else {}
            try:
                record = await asyncio.to_thread(accounts.audit_start, user=name, action=action, target=path,
                                                 client=client[0] if client else None, detail=detail)
                await asyncio.to_thread(accounts.audit_finish, record_id=record, status=status_code)
            except Exception:  # the audit must not turn a done mutation into a 500; say it loudly
                log.exception("could not write the audit record for %s by %s", action, name)


async def _refuse(send: Send, code: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if code == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
