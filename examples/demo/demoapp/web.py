"""demo-web: the access-layer sample. The gateway routes ``/`` in ``dev`` here.

``GET /`` answers with JSON naming the pod that served it and, when ``ZK_HOSTS`` is set, with
demo-api's answer for the same user under ``backend``: the provider is chosen by BizCloud's SOA
SDK from the ZooKeeper registry, gray or normal by the user ID in ``X-User-Id`` (the same split as
the gateway's). A backend failure is reported under ``backend_error`` with a 200, so the access
layer stays observable while the SOA layer is down. PORT sets the port (default 8080).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from typing import Any

from bizcloud.soa.consumer import Consumer
from demoapp.common import App, Identity, Reply, Request, keep_trying, log, serve

DEFAULT_INTERFACE = "io.bizcloud.demo.DemoApi"
CALL_TIMEOUT_S = 2.0


class Backend:
    """demo-api through the SOA SDK's consumer, connected in the background (ZooKeeper may be late)."""

    def __init__(self, hosts: str, interface: str, service: str, env: str | None) -> None:
        self.hosts, self.interface, self.service = hosts, interface, service
        # Only providers of our own environment: a dev consumer never calls another env's pods.
        self.consumer = Consumer(hosts, interface, service=service, env=env or None)
        self._stopped = threading.Event()
        self._connected = keep_trying(self.consumer.start, f"consumer of {interface}", stopped=self._stopped)

    def call(self, uid: str | None) -> dict[str, Any]:
        """One call to a provider chosen for ``uid``; a refused connection retries another once."""
        if not self._connected.is_set():
            raise ConnectionError(f"not connected to the registry at {self.hosts} yet")
        consumer = self.consumer
        last_error: Exception | None = None
        for _ in range(2):
            provider = consumer.pick(uid)
            try:
                return self._get(provider.host, provider.port, uid)
            except OSError as e:
                last_error = e
                consumer.mark_failed(provider)
        raise ConnectionError(f"demo-api did not answer: {last_error}")

    def _get(self, host: str, port: int, uid: str | None) -> dict[str, Any]:
        conn = http.client.HTTPConnection(host, port, timeout=CALL_TIMEOUT_S)
        try:
            conn.request("GET", f"/{self.interface}/hello", headers={"X-User-Id": uid} if uid else {})
            response = conn.getresponse()
            body: dict[str, Any] = json.loads(response.read() or b"{}")
        finally:
            conn.close()
        if response.status != 200:
            why = body.get("error", body)
            raise ConnectionRefusedError(f"{host}:{port} answered {response.status}: {why}")
        return body

    def stop(self) -> None:
        self._stopped.set()
        if self._connected.is_set():
            self.consumer.stop()


def build(identity: Identity, backend: Backend | None) -> App:
    app = App(identity)

    def root(request: Request) -> Reply:
        body: dict[str, Any] = identity.as_json()
        if backend is not None:
            try:
                body["backend"] = backend.call(request.headers.get("x-user-id"))
            except Exception as e:  # any SOA failure is shown, never fatal
                body["backend_error"] = f"{type(e).__name__}: {e}"
        return 200, body

    app.route("GET", "/", root)
    return app


def main() -> int:
    hosts = os.environ.get("ZK_HOSTS", "")
    backend = Backend(hosts, os.environ.get("BACKEND_INTERFACE", DEFAULT_INTERFACE),
                      os.environ.get("BACKEND_SERVICE", "demo-api"), os.environ.get("ENV")) if hosts else None
    if backend is not None:
        log("soa consumer", zookeeper=hosts, interface=backend.interface, service=backend.service)
    return serve(build(Identity.from_env(), backend), int(os.environ.get("PORT", "8080")),
                 on_stop=backend.stop if backend is not None else lambda: None)
