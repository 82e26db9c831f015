"""The console: server-rendered pages over the catalog and the accounts, with a little JavaScript.

Services and their instances by environment and group (kept live by long-polling the change
stream), each service's config, dependency graph and grants with their reasons; the config center
(configs, versions, diffs), the platform's dependency graph (drawn by Graphviz, ``graph_picture``),
the grants in force and their journal; environments, routes, the audit log with shell replay,
users (admins only) and the WebShell's terminal (xterm.js, installed from npm by ``make setup``
into ``frontend/node_modules`` and served as is). Pages show what exists and nothing that does
not. A service's page deploys (its progress streamed line by line), dry-runs and scales it in each
environment it has parameters for, and steers its gray release. Every page needs a console
session (the login page sets it) and is read-only for a viewer; controls are enabled only where
the API would let the user through (``release_decisions``; the tooltip says why not), and the API
checks again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bizcloud import identifiers
from bizcloud.accounts.roles import Role, owners_of
from bizcloud.accounts.store import AccountStore, UserOut
from bizcloud.authz.journal import AuthzStore
from bizcloud.catalog.errors import NotFound
from bizcloud.catalog.store import CatalogStore
from bizcloud.configcenter import graph
from bizcloud.configcenter.errors import ConfigNotFound
from bizcloud.configcenter.store import ConfigStore, VersionOut
from bizcloud.release.store import HistoryEntry
from bizcloud.web import graph_picture
from bizcloud.web.auth import authenticate, production_envs, scope_headers
from bizcloud.web.release_guard import release_decisions

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
FRONTEND_DIR = HERE / "frontend" / "node_modules"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)


async def _user(request: Request) -> UserOut | None:
    accounts: AccountStore = request.app.state.account_store
    return await authenticate(accounts, scope_headers(request.scope))


def _page(request: Request, template: str, user: UserOut, status_code: int = 200,
          **context: Any) -> HTMLResponse:
    roles = {"can_shell": user.role is not Role.VIEWER, "is_admin": user.role is Role.ADMIN}
    return templates.TemplateResponse(request, template, {"user": user, **roles, **context},
                                      status_code=status_code)


def _configs(request: Request) -> ConfigStore:
    store: ConfigStore = request.app.state.config_store
    return store


def _grants(request: Request) -> AuthzStore:
    store: AuthzStore = request.app.state.authz_store
    return store


def _current_config(store: ConfigStore, name: str) -> VersionOut | None:
    """The newest version of ``name`` (a deletion too), or None when it never had a config."""
    try:
        return store.history(name)[-1]
    except ConfigNotFound:
        return None


async def _picture(store: ConfigStore, service: str | None) -> graph_picture.Picture | None:
    """The graph of the live configs (or of one service's part of it); None when there is nothing to draw."""
    snapshot = await asyncio.to_thread(store.latest)
    full = graph.build(services=snapshot.services, inventory=snapshot.inventory)
    try:
        shown = full.for_service(service) if service else full
    except KeyError:
        return None
    return await graph_picture.draw(shown, highlight=service) if shown.nodes else None


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
    authz = _grants(request)
    releases = getattr(request.app.state, "release_store", None)
    history = await asyncio.to_thread(releases.history, service=name, limit=20) if releases else []
    grays = [g for g in await asyncio.to_thread(releases.grays) if g.service == name] if releases else []
    can_release = user.role in (Role.OPS, Role.ADMIN) or user.name in owners_of(service.owner)
    envs = await asyncio.to_thread(_release_envs, request, name, history)
    controls = release_decisions(user=user, service=name, envs=envs, owners=owners_of(service.owner),
                                 production_envs=production_envs(request))
    return _page(request, "service.html", user, service=service, routes=routes, history=history, grays=grays,
                 can_release=can_release, controls=controls,
                 has_cluster=getattr(request.app.state, "release_operations", None) is not None,
                 config=await asyncio.to_thread(_current_config, _configs(request), name),
                 picture=await _picture(_configs(request), name),
                 grants=await asyncio.to_thread(authz.grants, service=name),
                 journal=await asyncio.to_thread(authz.journal, service=name, limit=20))


def _release_envs(request: Request, name: str, history: list[HistoryEntry]) -> set[str]:
    """Where ``name`` can be deployed or scaled: the environments its config has parameters for,
    the catalog's environments, and wherever it was released before."""
    catalog: CatalogStore = request.app.state.catalog_store
    config = _configs(request).latest().services.get(name)
    return ({e.name for e in catalog.list_environments()} | {h.env for h in history}
            | set(config.resources if config else ()))


@router.get("/configs")
async def configs_page(request: Request) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    configs = await asyncio.to_thread(_configs(request).list_latest)
    return _page(request, "configs.html", user, configs=configs)


@router.get("/configs/{name}")
async def config_page(request: Request, name: str, version: int | None = None, old: int | None = None,
                      new: int | None = None) -> Response:
    """One config: the YAML of its current (or chosen) version, its history, a diff of any two versions.

    ``?old=&new=`` pick the diff (default: the newest against the one before), ``?version=`` the
    YAML shown; an unknown version is a 404 page that says which versions exist.
    """
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    store = _configs(request)
    try:
        history = await asyncio.to_thread(store.history, name)
        shown = history[-1] if version is None else await asyncio.to_thread(store.get, name, version)
        diff = await asyncio.to_thread(store.diff, name, old, new)
    except ConfigNotFound as e:
        return _page(request, "problem.html", user, status_code=404, title=f"config {name}", problem=e)
    is_service = await asyncio.to_thread(_is_service, request, name)
    return _page(request, "config.html", user, name=name, history=list(reversed(history)), shown=shown,
                 current=history[-1], diff=diff, is_service=is_service)


def _is_service(request: Request, name: str) -> bool:
    catalog: CatalogStore = request.app.state.catalog_store
    try:
        catalog.get_service(name=name)
    except NotFound:
        return False
    return True


@router.get("/graph")
async def graph_page(request: Request) -> Response:
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    return _page(request, "graph.html", user, picture=await _picture(_configs(request), None))


@router.get("/grants")
async def grants_page(request: Request, ip: str = "", service: str = "") -> Response:
    """The grants in force (with their reasons) and the journal, both filtered by ip and/or service."""
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    ip, service = ip.strip(), service.strip()
    problem = None
    address: str | None = None
    if ip:
        try:
            address = identifiers.ip_address(ip, "ip")
        except identifiers.InvalidNameError as e:
            problem = e
    authz = _grants(request)
    grants, journal = [], []
    if problem is None:
        grants = await asyncio.to_thread(authz.grants, ip=address, service=service or None)
        journal = await asyncio.to_thread(authz.journal, ip=address, service=service or None, limit=100)
    return _page(request, "grants.html", user, status_code=422 if problem else 200, ip=ip, service=service,
                 grants=grants, journal=journal, problem=problem)


@router.get("/users")
async def users_page(request: Request) -> Response:
    """Users and their roles, with the controls to add one, change a role, issue a token: admins only."""
    if (user := await _user(request)) is None:
        return _login_redirect(request)
    if user.role is not Role.ADMIN:
        return _page(request, "problem.html", user, status_code=403, title="Users",
                     problem="only an admin manages users — ask an admin to change your role")
    accounts: AccountStore = request.app.state.account_store
    return _page(request, "users.html", user, users=await asyncio.to_thread(accounts.list_users),
                 roles=list(Role))


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
