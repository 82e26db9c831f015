"""demo-api: the SOA provider sample behind demo-web.

It serves ``GET /<interface>/<method>`` as HTTP/JSON on its container port named ``soa`` (PORT,
default 20880) for each interface in ``SOA_INTERFACES`` (the same list as the pod's
``bizcloud.io/soa-interfaces`` annotation, from which BizCloud registers it in ZooKeeper; the
pod itself writes nothing to the registry). With ``ZK_HOSTS`` set, each call is checked against
the interface's consumer whitelist through the SDK's provider helper and refused with 403. With
``MYSQL_HOST`` set, each answer carries a greeting read from the database under ``db``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from bizcloud.soa.provider import Whitelist
from demoapp.common import App, Identity, Reply, Request, keep_trying, log, serve
from demoapp.db import Database
from demoapp.web import DEFAULT_INTERFACE

Guard = tuple[Whitelist, threading.Event]


def build(identity: Identity, interfaces: list[str], whitelists: dict[str, Guard],
          database: Database | None = None) -> App:
    app = App(identity)

    def handler(interface: str) -> Callable[[Request], Reply]:
        def call(request: Request) -> Reply:
            guard = whitelists.get(interface)
            if guard is not None and not guard[1].is_set():  # fail closed until the rule is known
                return 503, {"error": f"the whitelist of {interface} is not loaded yet (no registry)"}
            if guard is not None and not guard[0].allows(request.client_ip):
                return 403, {"error": f"consumer {request.client_ip} is not on the whitelist of {interface}"}
            method = request.path.removeprefix(f"/{interface}/") or "hello"
            answer: dict[str, Any] = {"interface": interface, "method": method,
                                      "uid": request.headers.get("x-user-id"), **identity.as_json()}
            if database is not None:
                answer["db"] = database.greeting()
            return 200, answer
        return call

    for interface in interfaces:
        app.route("GET", f"/{interface}/", handler(interface))
    return app


def main() -> int:
    listed = os.environ.get("SOA_INTERFACES", DEFAULT_INTERFACE).split(",")
    interfaces = [i.strip() for i in listed if i.strip()]
    hosts = os.environ.get("ZK_HOSTS", "")
    whitelists: dict[str, Guard] = {}
    stopped = threading.Event()
    if hosts:
        for interface in interfaces:
            whitelist = Whitelist(hosts, interface)
            whitelists[interface] = (whitelist, keep_trying(whitelist.start, f"whitelist of {interface}",
                                                            stopped=stopped))
        log("soa provider", zookeeper=hosts, interfaces=interfaces)

    def stop() -> None:
        stopped.set()
        for whitelist, loaded in whitelists.values():
            if loaded.is_set():
                whitelist.stop()

    app = build(Identity.from_env(), interfaces, whitelists, Database.from_env())
    return serve(app, int(os.environ.get("PORT", "20880")), on_stop=stop)
