"""The console: server-rendered pages over the catalog and the accounts, with a little JavaScript.

Services and their instances by environment and group (kept live by long-polling the change
stream), environments, routes, the audit log with shell replay, and the WebShell's terminal
(xterm.js, installed from npm by ``make setup`` into ``frontend/node_modules`` and served as is).
Pages show what exists and nothing that does not: later issues (configs, grants, deploys, gray)
add their sections here. Every page needs a console session; the login page sets it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore, UserOut
from bizcloud.catalog.errors import NotFound
from bizcloud.catalog.store import CatalogStore
from bizcloud.web.auth import authenticate, scope_headers

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
FRONTEND_DIR = HERE / "frontend" / "node_modules"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)


async def _user(request: Request) -> UserOut | None:
    accounts: AccountStore = request.app.state.account_store
    return await authenticate(accounts, scope_headers(request.scope))


def _page(request: Request, name: str, user: UserOut, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"user": user, "can_shell": user.role is not Role.VIEWER,
                                                      **context})


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/console/login?next={request.url.path}", status_code=303)


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"user": None})


@router.get("/")
async def services_page(request: Request) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    catalog: CatalogStore = request.app.state.catalog_store
    services = await asyncio.to_thread(catalog.list_services)
    snapshot = await asyncio.to_thread(catalog.snapshot)
    counts: dict[str, int] = {}
    for instance in snapshot.instances:
        counts[instance.service] = counts.get(instance.service, 0) + 1
    return _page(request, "services.html", user, services=services, counts=counts)


@router.get("/services/{name}")
async def service_page(request: Request, name: str) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    catalog: CatalogStore = request.app.state.catalog_store
    try:
        service = await asyncio.to_thread(catalog.get_service, name=name)
    except NotFound:
        return HTMLResponse(f"no service named {name}", status_code=404)
    routes = await asyncio.to_thread(catalog.list_routes, service=name)
    return _page(request, "service.html", user, service=service, routes=routes)


@router.get("/environments")
async def environments_page(request: Request) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    catalog: CatalogStore = request.app.state.catalog_store
    return _page(request, "environments.html", user,
                 environments=await asyncio.to_thread(catalog.list_environments))


@router.get("/routes")
async def routes_page(request: Request) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    catalog: CatalogStore = request.app.state.catalog_store
    return _page(request, "routes.html", user, routes=await asyncio.to_thread(catalog.list_routes))


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    accounts: AccountStore = request.app.state.account_store
    return _page(request, "audit.html", user, records=await asyncio.to_thread(accounts.audit, limit=200))


@router.get("/audit/{record_id}")
async def replay_page(request: Request, record_id: int) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    accounts: AccountStore = request.app.state.account_store
    record = await asyncio.to_thread(accounts.audit_record, record_id=record_id)
    if record is None:
        return HTMLResponse(f"no audit record {record_id}", status_code=404)
    return _page(request, "replay.html", user, record=record)


@router.get("/shell")
async def shell_page(request: Request, namespace: str = "", pod: str = "", container: str = "",
                     docker: str = "") -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    if docker:
        path, title = f"/api/v1/shell/docker/{docker}", f"container {docker}"
    else:
        path = f"/api/v1/shell/kube/{namespace}/{pod}" + (f"?container={container}" if container else "")
        title = f"{namespace}/{pod}"
    return _page(request, "shell.html", user, ws_path=path, title=title)
