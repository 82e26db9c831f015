"""What the gateway benchmarks share: a server + monitor + gateway stack of their own, and its table.

The three run as subprocesses (`python -m bizcloud server|monitor|gateway`) exactly as they ship,
on the gateway benchmarks' own ports (28700-28899: below the ephemeral range, which a kwok cluster's
many loopback connections draw from), database, Lease and state directory, so neither the
developers' stack nor another engineer's benchmark cluster (``bench_settings``) is touched.
The latency benchmark's kwok cluster is ours too (``gateway_bench_settings``: 44xxx ports,
bridge ``bizgw0``, pods in 10.90.0.0/16).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bizcloud.catalog.db import make_engine
from bizcloud.catalog.policies import GrayPolicyOut
from bizcloud.catalog.store import CatalogStore
from bizcloud.cluster import images, lifecycle
from bizcloud.cluster.processes import wait_until
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from bizcloud.stack import SAMPLE_DIR

SERVER_PORT, MONITOR_PORT, GATEWAY_PORT, ADMIN_PORT = 28700, 28701, 28780, 28781
PLAIN_PORT = 28880  # the plain nginx peer of the throughput benchmark


# A pod that answers every request at once, in the sample image (its python3). With the sample app
# itself (a Python web app, ~250 requests/s a pod here) the pods bound wrk's figure, and a probe
# that wants to see a new pod's first answer within a few ms needs answers in well under one.
FAST_BACKEND_PY = r"""
import asyncio, json, os
body = json.dumps({"pod": os.environ.get("POD_NAME"), "group": os.environ.get("GROUP")}).encode()
head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        requests = self.buffer.count(b"\r\n\r\n")  # GETs: no bodies
        if requests:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4:]
            self.transport.write((head + body) * requests)
async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "0.0.0.0", 8080, backlog=4096)
    await server.serve_forever()
asyncio.run(main())
"""
FAST_BACKEND = ["python3", "-c", FAST_BACKEND_PY]


def gateway_bench_settings(state_dir: Path) -> Settings:
    """An isolated kwok cluster beside the developers' one and beside ``bench_settings``' one."""
    return Settings(
        state_dir=state_dir, cluster_name="bizgw", node_name="bizgw-node", cni_bridge="bizgw0",
        pod_cidr="10.90.0.0/16", etcd_port=44379, etcd_peer_port=44380, apiserver_port=44443,
        controller_manager_port=44257, scheduler_port=44259, kubelet_port=44250, kubelet_healthz_port=44248,
        kwok_port=44247,
    )


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class GatewayStack:
    """A running server, monitor and gateway, and how to write routes and read the gateway's table."""

    scratch: Path
    db_url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)   # server, monitor, gateway
    api: str = f"http://127.0.0.1:{SERVER_PORT}"
    gateway: str = f"http://127.0.0.1:{GATEWAY_PORT}"
    admin: str = f"http://127.0.0.1:{ADMIN_PORT}"
    monitor_metrics: str = f"http://127.0.0.1:{MONITOR_PORT}/metrics"

    def table(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.admin}/bizcloud/upstreams", timeout=10).json()
        return result

    def peers(self, service: str, env: str) -> list[dict[str, Any]]:
        """Every peer of ``service`` in ``env`` in the gateway's table, with its group and ``added`` time."""
        upstream = (self.table().get("upstreams") or {}).get(f"{service}/{env}") or {}
        return [{**p, "group": g} for g in ("normal", "gray") for p in upstream.get(g) or []]

    def route(self, service: str, env: str, *, gray_ratio: float | None = None) -> None:
        """Route every host and path to ``service`` (and set its gray ratio), through the store: API
        writes need a login, the store does not."""
        wait_until(lambda: httpx.get(f"{self.api}/api/v1/services/{service}").status_code == 200,
                   timeout=120, what=f"{service} in the catalog")
        engine = make_engine(self.db_url)
        try:
            store = CatalogStore(engine)
            store.create_route(host="*", path_prefix="/", service=service, env=env)
            if gray_ratio is not None:
                store.set_gray(policy=GrayPolicyOut(service=service, ratio=gray_ratio))
        finally:
            engine.dispose()
        # Routes reach nginx through the syncer alone, instances also by the monitor's push: wait
        # for the route itself, not only for peers, before sending requests.
        wait_until(lambda: any(r["service"] == service for r in self.table().get("routes") or []),
                   timeout=60, what=f"the route to {service} in the gateway")

    def committed_at(self) -> dict[str, float]:
        """When each instance's first UP was committed to the catalog (epoch s), by uid: the split
        of Ready -> routable into the monitor's part and the change stream + syncer's part."""
        path = self.db_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            rows = db.execute("SELECT uid, min(at) FROM changes WHERE type = 'UP' GROUP BY uid").fetchall()
        return {uid: datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp() for uid, at in rows}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


# `bizcloud server` with another change-stream poll interval (create_app's poll_interval): the A/B
# of the latency benchmark's --server-poll-s, to show what the interval costs.
SERVER_WITH_POLL = (
    "import sys, uvicorn; from bizcloud.daemons import configure_logging; "
    "from bizcloud.settings import Settings; from bizcloud.web.app import create_app; "
    "configure_logging(); s = Settings(); "
    "app = create_app(database_url=s.resolved_database_url(), poll_interval=float(sys.argv[1]), settings=s); "
    "uvicorn.run(app, host=s.server_host, port=s.server_port, log_config=None, access_log=False, "
    "timeout_graceful_shutdown=2)")


@contextlib.contextmanager
def gateway_stack(cluster: Settings, scratch: Path, *, workers: int = 2, server_poll_s: float | None = None
                  ) -> Iterator[GatewayStack]:
    """Start server, monitor (on ``cluster``) and gateway; stop them on exit. Logs go to ``scratch``.

    ``server_poll_s``: run the server with that change-stream poll interval instead of its own."""
    db_url = f"sqlite:///{scratch / 'catalog.db'}"
    env = {**os.environ, "BIZCLOUD_DATABASE_URL": db_url, "BIZCLOUD_SERVER_PORT": str(SERVER_PORT),
           "BIZCLOUD_MONITOR_METRICS_PORT": str(MONITOR_PORT), "BIZCLOUD_GATEWAY_PORT": str(GATEWAY_PORT),
           "BIZCLOUD_GATEWAY_ADMIN_PORT": str(ADMIN_PORT), "BIZCLOUD_MONITOR_GRACE_S": "1",
           "BIZCLOUD_MONITOR_LEASE_NAME": f"bench-gw-{uuid.uuid4().hex[:6]}",
           "BIZCLOUD_STATE_DIR": str(cluster.resolved_state_dir()),
           "BIZCLOUD_KUBECONFIG": str(lifecycle.kubeconfig_path(cluster))}
    stack = GatewayStack(scratch=scratch, db_url=db_url)
    try:
        for name, argv, probe, extra in (
                ("server", ["server"] if server_poll_s is None else
                 ["-c", SERVER_WITH_POLL, str(server_poll_s)], f"{stack.api}/healthz", {}),
                ("monitor", ["monitor"], f"http://127.0.0.1:{MONITOR_PORT}/metrics", {}),
                # the gateway keeps its nginx prefix under its own state directory
                ("gateway", ["gateway", "--workers", str(workers)], f"{stack.admin}/healthz",
                 {"BIZCLOUD_STATE_DIR": str(scratch)})):
            log = (scratch / f"{name}.log").open("wb")
            command = argv if argv[0] == "-c" else ["-m", "bizcloud", *argv]
            stack.procs.append(subprocess.Popen([sys.executable, *command],
                                                env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT))
            stack.pids[name] = stack.procs[-1].pid
            wait_until(lambda url=probe: answers(url), timeout=60, what=f"the {name}",  # type: ignore[misc]
                       log=scratch / f"{name}.log", pid=stack.procs[-1].pid)
        yield stack
    finally:
        stack.stop()


@dataclass
class SampleNamespace:
    """A throwaway namespace on the developers' real cluster, and the sample image loaded there."""

    cluster: Settings
    kubectl: Kubectl
    name: str
    image: str

    def deploy(self, name: str, *, replicas: int, service: str | None = None, group: str = "normal",
               command: list[str] | None = None) -> None:
        """The sample app as a Deployment, labelled for the monitor (env ``e2e``, see tests/e2e);
        ``command`` runs something else in its image."""
        from tests.e2e.conftest import demo_deployment  # noqa: PLC0415 - the e2e tests' sample Deployment

        manifest = json.loads(demo_deployment(name=name, namespace=self.name, image=self.image,
                                              replicas=replicas, service=service, group=group))
        if command is not None:
            manifest["spec"]["template"]["spec"]["containers"][0]["command"] = command
        self.kubectl.apply(json.dumps(manifest))


@contextlib.contextmanager
def sample_namespace() -> Iterator[SampleNamespace]:
    """The e2e fixtures' pattern: the real cluster (started if down), the sample image, a namespace of
    ours that is deleted at the end; nothing else on the cluster is touched."""
    cluster = Settings()
    lifecycle.up(cluster, mode="real")
    image = cluster.sample_image
    images.build_image(SAMPLE_DIR, image, cluster)
    images.load_into_containerd(image, lifecycle.layout_of(cluster).containerd_socket)
    kubectl = lifecycle.kubectl(cluster)
    name = f"bc-gwbench-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    try:
        wait_until(lambda: kubectl.run("get", "sa", "default", "-n", name, check=False).returncode == 0,
                   timeout=60, what="the default ServiceAccount")
        yield SampleNamespace(cluster=cluster, kubectl=kubectl, name=name, image=image)
    finally:
        kubectl.run("delete", "namespace", name, "--wait=false", check=False)


class Observer:
    """A daemon thread that runs ``_run`` until ``stop`` is set: the benchmarks' watchers and probes."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError


def save_and_show(path: Path, results: dict[str, Any], console: Console,
                  print_table: Callable[[Console, dict[str, Any]], None]) -> None:
    """Write a benchmark's figures to ``path`` (JSON) and show them."""
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print_json(json.dumps(results))
    print_table(console, results)
