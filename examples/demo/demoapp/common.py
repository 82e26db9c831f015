"""What both sample services share: identity, the failure switch, JSON logs, a graceful server.

Identity comes from the environment, which the Deployment fills from the downward API: SERVICE,
POD_NAME (falls back to the hostname), POD_IP (falls back to the address the hostname resolves
to), VERSION, GROUP, ENV and NODE_NAME.

A failure switch lets tests and demos make an instance misbehave on purpose:

    POST /admin/fail?rate=N[&mode=error|health]   N percent (0..100) of requests fail
    GET  /admin/fail                              the current setting

In mode "error" (the default) the service's own answers are 500; in mode "health" ``GET /healthz``
answers 503, so the readiness probe takes the pod out of service. rate=0 clears it. FAIL_RATE and
FAIL_MODE set the switch at start. Every request is logged as one JSON line on stdout; SIGTERM
stops accepting connections and lets in-flight requests finish.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("error", "health")


def log(msg: str, **fields: Any) -> None:
    """One JSON object per line on stdout, like every BizCloud component."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry = {"time": now, "level": "INFO", "msg": msg, **fields}
    sys.stdout.write(json.dumps(entry) + "\n")


@dataclass(frozen=True)
class Identity:
    service: str
    pod: str
    ip: str
    version: str
    group: str
    env: str
    node: str

    @classmethod
    def from_env(cls) -> Identity:
        env = os.environ.get
        pod = env("POD_NAME") or socket.gethostname()
        ip = env("POD_IP") or _own_address()
        return cls(service=env("SERVICE", ""), pod=pod, ip=ip, version=env("VERSION", ""),
                   group=env("GROUP", ""), env=env("ENV", ""), node=env("NODE_NAME", ""))

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def _own_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


@dataclass(frozen=True)
class FailSwitch:
    """The injected-failure setting; replaced as a whole, never mutated, so threads read it safely."""

    rate: int = 0
    mode: str = "error"

    @classmethod
    def parse(cls, rate: str | None, mode: str | None) -> FailSwitch:
        mode = mode or "error"
        if mode not in MODES:
            raise ValueError(f"mode must be 'error' or 'health', not {mode!r}")
        try:
            value = int(rate or "0")
        except ValueError:
            value = -1
        if not 0 <= value <= 100:
            raise ValueError(f"rate must be an integer from 0 to 100, not {rate!r}")
        return cls(rate=value, mode=mode)

    def fails(self, mode: str) -> bool:
        return self.mode == mode and self.rate > 0 and random.randrange(100) < self.rate


def keep_trying(start: Callable[[], object], what: str, *, stopped: threading.Event) -> threading.Event:
    """Run ``start`` in the background until it succeeds; the returned event is set when it has.

    The registry may come up after the app (or be down for a while): the app serves meanwhile and
    answers what depends on the registry with a clear error instead of crashing or blocking.
    """
    done = threading.Event()

    def loop() -> None:
        delay = 0.5
        while not stopped.is_set():
            try:
                start()
            except Exception as e:  # any failure to connect: log, wait, retry
                log("registry not reachable yet", what=what, error=f"{type(e).__name__}: {e}",
                    retry_in_s=delay)
                stopped.wait(delay)
                delay = min(delay * 2, 10.0)
            else:
                log("registry connected", what=what)
                done.set()
                return

    threading.Thread(target=loop, name=f"connect {what}", daemon=True).start()
    return done


Reply = tuple[int, Any]
Route = Callable[["Request"], Reply]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    client_ip: str


class App:
    """A tiny router with the health check and the failure switch built in."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.fault = FailSwitch.parse(os.environ.get("FAIL_RATE"), os.environ.get("FAIL_MODE"))
        self.routes: list[tuple[str, str, Route]] = []

    def route(self, method: str, prefix: str, handler: Route) -> None:
        self.routes.append((method, prefix, handler))

    def handle(self, request: Request) -> Reply:
        if request.path == "/healthz":
            return (503, "failing\n") if self.fault.fails("health") else (200, "ok\n")
        if request.path == "/admin/fail":
            if request.method == "GET":
                return 200, asdict(self.fault)
            try:
                self.fault = FailSwitch.parse(request.query.get("rate"), request.query.get("mode"))
            except ValueError as e:
                return 400, {"error": str(e)}
            log("fail switch set", rate=self.fault.rate, mode=self.fault.mode)
            return 200, asdict(self.fault)
        for method, prefix, handler in self.routes:
            if request.method == method and (request.path == prefix or
                                             (prefix.endswith("/") and request.path.startswith(prefix))):
                if self.fault.fails("error"):
                    return 500, {"error": "injected failure", "pod": self.identity.pod}
                return handler(request)
        return 404, {"error": f"no route for {request.method} {request.path}"}


def _handler_class(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            started = time.monotonic()
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            request = Request(self.command, url.path, query, {k.lower(): v for k, v in self.headers.items()},
                              self.client_address[0])
            status, body = app.handle(request)
            data = body.encode() if isinstance(body, str) else (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8" if isinstance(body, str)
                             else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            log("request", method=self.command, path=url.path, query=url.query, status=status,
                bytes=len(data), duration_ms=round((time.monotonic() - started) * 1000, 3),
                remote=self.client_address[0], user_agent=self.headers.get("User-Agent", ""))

        do_GET = do_POST = _serve  # noqa: N815 (http.server's naming)

        def log_message(self, format: str, *args: Any) -> None:
            """Silenced: every request is already logged as JSON by ``_serve``."""

    return Handler


def serve(app: App, port: int, *, on_stop: Callable[[], None] = lambda: None) -> int:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests and return 0."""
    server = ThreadingHTTPServer(("0.0.0.0", port), _handler_class(app))
    server.daemon_threads = False  # server_close() waits for requests in flight

    def stop(signum: int, _frame: object) -> None:
        log("shutting down", signal=signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ident = app.identity
    log("listening", addr=f":{port}", service=ident.service, pod=ident.pod, version=ident.version,
        group=ident.group, fail_rate=app.fault.rate, fail_mode=app.fault.mode)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    on_stop()
    log("stopped")
    return 0
