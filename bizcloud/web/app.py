"""The API server's assembly: the catalog's routes, /metrics, /healthz and one log line per request.

This is the top of the request path (uvicorn -> this app -> catalog API -> store -> SQL). Creating
the app does no I/O; its lifespan migrates the database to the newest schema, opens the store and
the change stream's revision watch, and closes them again, so the same function serves
``bizcloud server``, tests on a random port and anything that embeds the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, status
from prometheus_client import Histogram, make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bizcloud import __version__
from bizcloud.catalog.api import get_store
from bizcloud.catalog.api import router as catalog_router
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.errors import CatalogUnavailable
from bizcloud.catalog.feed import RevisionWatch
from bizcloud.catalog.store import CatalogStore

access_log = logging.getLogger("bizcloud.web.access")

REQUEST_SECONDS = Histogram("bizcloud_http_request_duration_seconds", "HTTP requests by route and status",
                            ["method", "route", "status"])


def create_app(*, database_url: str, poll_interval: float = 0.05) -> FastAPI:
    """The BizCloud API on the catalog database at ``database_url`` (migrated at startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(database_url)
        try:
            await asyncio.to_thread(migrate_engine, engine)
            store = CatalogStore(engine)
            watch = RevisionWatch(store.latest_revision, interval=poll_interval)
            app.state.catalog_store = store
            app.state.revision_watch = watch
            try:
                yield
            finally:
                await watch.close()
        finally:
            engine.dispose()

    app = FastAPI(title="BizCloud", version=__version__, lifespan=lifespan,
                  description="Private cloud on Kubernetes: service catalog, change stream, operations.")
    app.include_router(catalog_router)
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

    app.add_middleware(AccessLog)
    return app


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
