"""A real gateway (nginx + Lua + syncer) on a real API server, and local HTTP backends as its peers.

The catalog's fixtures (a migrated SQLite file, a store on it, a uvicorn server) come from the
catalog's tests; instances are written with the store, as the monitor would, and reach nginx
through the change stream and the syncer like in production.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bizcloud.gateway.nginxconf import GatewayConfig, GatewayPaths
from bizcloud.gateway.process import children
from bizcloud.gateway.runner import run_gateway
from tests.catalog.conftest import db_url, engine, store  # noqa: F401
from tests.catalog.test_api import Server, client, server  # noqa: F401

GATEWAY_PORT, ADMIN_PORT = 18780, 18781   # this suite's range: 18700-18799


@dataclass
class Gateway:
    url: str
    admin: str
    paths: GatewayPaths

    def table(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.admin}/bizcloud/upstreams", timeout=5).json()
        return result

    def master_pid(self) -> int:
        return int(self.paths.pidfile.read_text().strip())

    def worker_pids(self) -> list[int]:
        return children(self.master_pid())


@dataclass
class Backend:
    """A plain HTTP server standing in for a pod: answers JSON naming itself and counts requests."""

    name: str
    port: int = 0
    hits: list[str] = field(default_factory=list)
    status: int = 200        # what it answers (a broken release answers 500)
    delay_s: float = 0.0     # how long it thinks first (a slow release)
    server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_backend(name: str) -> Backend:
    backend = Backend(name=name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_GET(self) -> None:
            backend.hits.append(self.path)
            time.sleep(backend.delay_s)
            body = json.dumps({"pod": name, "group": self.headers.get("X-BizCloud-Group")}).encode()
            self.send_response(backend.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    backend.server, backend.port = srv, srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return backend


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    started = [start_backend(f"pod-{i}") for i in range(4)]
    yield started
    for backend in started:
        backend.stop()


@pytest.fixture
def gateway(server: Server, tmp_path: Path) -> Iterator[Gateway]:  # noqa: F811
    with running_gateway(server.base_url, tmp_path / "gw", port=GATEWAY_PORT, admin_port=ADMIN_PORT) as gw:
        yield gw


@contextmanager
def running_gateway(catalog_url: str, prefix: Path, *, port: int, admin_port: int) -> Iterator[Gateway]:
    """A real gateway following the catalog at ``catalog_url``, on ports of the caller's suite."""
    config = GatewayConfig(host="127.0.0.1", port=port, admin_port=admin_port, workers=2, access_log=False)
    gw = Gateway(url=f"http://127.0.0.1:{port}", admin=f"http://127.0.0.1:{admin_port}",
                 paths=GatewayPaths(prefix))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(run_gateway(config=config, prefix=gw.paths.prefix,
                                                catalog_url=catalog_url, stop=stop, wait_s=1.0))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not _answers(f"{gw.admin}/healthz"):
        assert not errors, errors
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    yield gw
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors, errors


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def eventually(check: Any, *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout}s"
        time.sleep(0.02)
