"""demo-api: the SOA provider sample behind demo-web.

It serves ``GET /<interface>/<method>`` as HTTP/JSON on its container port named ``soa`` (PORT,
default 20880) for each interface in ``SOA_INTERFACES`` (the same list as the pod's
``bizcloud.io/soa-interfaces`` annotation, from which BizCloud registers it in ZooKeeper; the
pod itself writes nothing to the registry). With ``ZK_HOSTS`` set, each call is checked against
the interface's consumer whitelist through the SDK's provider helper and refused with 403.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from bizcloud.soa.provider import Whitelist

from demoapp.common import App, Identity, Reply, Request, log, serve
from demoapp.web import DEFAULT_INTERFACE


def build(identity: Identity, interfaces: list[str], whitelists: dict[str, Whitelist]) -> App:
    app = App(identity)

    def handler(interface: str) -> Callable[[Request], Reply]:
        def call(request: Request) -> Reply:
            whitelist = whitelists.get(interface)
            if whitelist is not None and not whitelist.allows(request.client_ip):
                return 403, {"error": f"consumer {request.client_ip} is not on the whitelist of {interface}"}
            method = request.path.removeprefix(f"/{interface}/") or "hello"
            return 200, {"interface": interface, "method": method, "uid": request.headers.get("x-user-id"),
                         **identity.as_json()}
        return call

    for interface in interfaces:
        app.route("GET", f"/{interface}/", handler(interface))
    return app


def main() -> int:
    listed = os.environ.get("SOA_INTERFACES", DEFAULT_INTERFACE).split(",")
    interfaces = [i.strip() for i in listed if i.strip()]
    hosts = os.environ.get("ZK_HOSTS", "")
    whitelists: dict[str, Whitelist] = {}
    if hosts:
        for interface in interfaces:
            whitelists[interface] = Whitelist(hosts, interface)
            whitelists[interface].start()
        log("soa provider", zookeeper=hosts, interfaces=interfaces)

    def stop() -> None:
        for whitelist in whitelists.values():
            whitelist.stop()

    return serve(build(Identity.from_env(), interfaces, whitelists), int(os.environ.get("PORT", "20880")),
                 on_stop=stop)
