"""The API server's assembly: the catalog's routes, accounts, the WebShell, the console, /metrics, /healthz.

This is the top of the request path (uvicorn -> this app -> catalog API -> store -> SQL). Creating
the app does no I/O; its lifespan migrates the database to the newest schema, opens the stores,
the change stream's revision watch and the cluster's kubeconfig (for shells), and closes them
again, so the same function serves ``bizcloud server``, tests on a random port and anything that
embeds the app. Every mutating API request passes ``AuditGuard`` (401/403 and an audit row).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import Histogram, make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bizcloud import __version__
from bizcloud.accounts.store import AccountStore
from bizcloud.authz.api import router as authz_router
from bizcloud.authz.journal import AuthzStore
from bizcloud.catalog.api import get_store
from bizcloud.catalog.api import router as catalog_router
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.errors import CatalogUnavailable
from bizcloud.catalog.feed import RevisionWatch
from bizcloud.catalog.store import CatalogStore
from bizcloud.catalog.wakeup import Address, listen
from bizcloud.cluster import lifecycle
from bizcloud.configcenter.api import router as configs_router
from bizcloud.configcenter.store import ConfigStore
from bizcloud.errors import BizCloudError
from bizcloud.kube import config as kube_config
from bizcloud.kube.client import KubeClient
from bizcloud.kube.config import KubeConfig
from bizcloud.release.api import router as release_router
from bizcloud.release.deploy import Releaser
from bizcloud.release.gray import GrayController
from bizcloud.release.gray_api import router as gray_router
from bizcloud.release.operations import ReleaseOperations
from bizcloud.release.params import Platform
from bizcloud.release.store import ReleaseStore
from bizcloud.settings import Settings
from bizcloud.web import accounts_api, console, shell_api
from bizcloud.web.auth import AuditGuard, guard_catalog
from bizcloud.web.configs_guard import guard_configs
from bizcloud.web.release_guard import guard_release

access_log = logging.getLogger("bizcloud.web.access")

REQUEST_SECONDS = Histogram("bizcloud_http_request_duration_seconds", "HTTP requests by route and status",
                            ["method", "route", "status"])


def create_app(*, database_url: str, poll_interval: float = 0.05, wakeup: Address | None = None,
               settings: Settings | None = None) -> FastAPI:
    """The BizCloud API on the catalog database at ``database_url`` (migrated at startup).

    ``wakeup``: the UDP address where the monitor's wake-up datagrams arrive after each commit
    (``catalog/wakeup.py``); without one the change stream finds commits every ``poll_interval`` s.

    ``settings`` says where shell recordings go, which cluster and Docker Engine shells reach, the
    keepalive interval and the production environments (defaults: the embedded ones).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(database_url)
        try:
            await asyncio.to_thread(migrate_engine, engine)
            store = CatalogStore(engine)
            watch = RevisionWatch(store.latest_revision, interval=poll_interval)
            wakeups = await listen(wakeup, watch.poke) if wakeup is not None else None
            app.state.catalog_store = store
            app.state.revision_watch = watch
            app.state.account_store = AccountStore(engine)
            app.state.config_store = ConfigStore(engine)
            app.state.authz_store = AuthzStore(engine)
            app.state.recordings_dir = settings.resolved_state_dir() / "recordings"
            app.state.kube_config = await asyncio.to_thread(_kube_config, settings)
            kube = KubeClient.from_config(app.state.kube_config) if app.state.kube_config else None
            app.state.release_store = ReleaseStore(engine)   # the history reads without a cluster
            if kube is not None:
                releaser = Releaser(kube, app.state.config_store, platform=Platform.from_settings(settings))
                app.state.releaser = releaser
                app.state.release_operations = ReleaseOperations(releaser, app.state.release_store)
                app.state.gray = GrayController.from_settings(
                    releaser=releaser, store=app.state.release_store, catalog=store, settings=settings)
                gray_runner = asyncio.create_task(app.state.gray.run_forever(), name="gray-runner")
            app.state.docker_host = settings.docker_host
            app.state.shell_keepalive_s = settings.shell_keepalive_s
            app.state.shell_stall_s = settings.shell_stall_s
            app.state.production_envs = frozenset(e.strip() for e in settings.production_envs.split(",")
                                                  if e.strip())
            try:
                yield
            finally:
                if wakeups is not None:
                    wakeups.close()
                await watch.close()
                if kube is not None:
                    gray_runner.cancel()
                    await asyncio.gather(gray_runner, return_exceptions=True)
                    await app.state.gray.close()
                    await kube.aclose()
        finally:
            engine.dispose()

    app = FastAPI(title="BizCloud", version=__version__, lifespan=lifespan,
                  description="Private cloud on Kubernetes: service catalog, change stream, operations.")
    app.include_router(catalog_router, dependencies=[Depends(guard_catalog)])
    app.include_router(configs_router, dependencies=[Depends(guard_configs)])
    app.include_router(authz_router)
    app.include_router(release_router, dependencies=[Depends(guard_release)])
    app.include_router(gray_router, dependencies=[Depends(guard_release)])
    app.include_router(accounts_api.router)
    app.include_router(shell_api.router)
    app.include_router(console.router)
    if console.FRONTEND_DIR.is_dir():  # `make setup` installs it (npm ci); without it only shells are missing
        app.mount("/static/xterm", StaticFiles(directory=console.FRONTEND_DIR / "@xterm"), name="xterm")
    app.mount("/static", StaticFiles(directory=console.STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/")
    # A plain route, not a mount: a mount would answer /metrics with a redirect to /metrics/.
    metrics = _AsgiEndpoint(make_asgi_app())
    app.router.routes.append(Route("/metrics", endpoint=metrics, include_in_schema=False))

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict[str, str | int]:
        """Ready when the catalog database answers; the revision shows the change stream is moving."""
        try:
            revision = get_store(request).latest_revision()
        except CatalogUnavailable as e:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, e.one_line()) from e
        return {"status": "ok", "revision": revision}

    app.add_middleware(AuditGuard)
    app.add_middleware(AccessLog)
    return app


def _kube_config(settings: Settings) -> KubeConfig | None:
    """The cluster shells reach; None (shells answer 503) when there is no usable kubeconfig."""
    try:
        return kube_config.load(lifecycle.kubeconfig_path(settings))
    except BizCloudError as e:
        access_log.warning(json.dumps({"msg": "no kubeconfig for the WebShell", "error": e.one_line()}))
        return None


class _AsgiEndpoint:
    """Starlette treats a plain function endpoint as a request handler; an object is served as ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class AccessLog:
    """One JSON line per HTTP request (method, path, route, status, duration) and its latency histogram."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            labels = {"method": scope["method"], "route": route, "status": str(status_code)}
            REQUEST_SECONDS.labels(**labels).observe(elapsed)
            client = scope.get("client")
            access_log.info(json.dumps({
                "method": scope["method"], "path": scope["path"], "route": route, "status": status_code,
                "duration_ms": round(elapsed * 1000, 2), "client": client[0] if client else None,
            }))
