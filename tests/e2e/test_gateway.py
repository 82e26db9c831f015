"""The gateway end to end: real cluster, real monitor, server and `bizcloud gateway` (nginx) processes.

Each process runs on this module's own ports (18710-18791), database and Lease, so nothing else
on the machine is disturbed. Pods are the sample app; requests go through nginx.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.gateway.process import children
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from tests.e2e.conftest import demo_deployment, ready_pods, wait_for

pytestmark = pytest.mark.e2e

SERVER_PORT, MONITOR_PORT, GATEWAY_PORT, ADMIN_PORT = 18710, 18711, 18790, 18791
API = f"http://127.0.0.1:{SERVER_PORT}"
GATEWAY = f"http://127.0.0.1:{GATEWAY_PORT}"
ADMIN = f"http://127.0.0.1:{ADMIN_PORT}"


@dataclass
class Stack:
    state: Path
    db_url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def table(self) -> dict[str, object]:
        result: dict[str, object] = httpx.get(f"{ADMIN}/bizcloud/upstreams", timeout=5).json()
        return result

    def workers(self) -> list[int]:
        return children(int((self.state / "gateway" / "nginx.pid").read_text()))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def gateway_stack(real_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway-e2e")
    env = {**os.environ, "BIZCLOUD_DATABASE_URL": f"sqlite:///{tmp / 'catalog.db'}",
           "BIZCLOUD_SERVER_PORT": str(SERVER_PORT), "BIZCLOUD_MONITOR_METRICS_PORT": str(MONITOR_PORT),
           "BIZCLOUD_GATEWAY_PORT": str(GATEWAY_PORT), "BIZCLOUD_GATEWAY_ADMIN_PORT": str(ADMIN_PORT),
           "BIZCLOUD_MONITOR_LEASE_NAME": f"e2e-gw-{uuid.uuid4().hex[:6]}", "BIZCLOUD_MONITOR_GRACE_S": "1",
           "BIZCLOUD_STATE_DIR": str(real_cluster.resolved_state_dir())}
    stack = Stack(state=tmp, db_url=env["BIZCLOUD_DATABASE_URL"])
    for name, probe in (("server", f"{API}/healthz"), ("monitor", f"http://127.0.0.1:{MONITOR_PORT}/metrics")):
        log = (tmp / f"{name}.log").open("wb")
        stack.procs.append(subprocess.Popen([sys.executable, "-m", "bizcloud", name], env=env, stdout=log,
                                            stderr=subprocess.STDOUT))
        wait_for(lambda url=probe: _answers(url), timeout=60, what=f"the {name}")  # type: ignore[misc]
    # the gateway keeps its nginx prefix under its own state directory
    gw_env = {**env, "BIZCLOUD_STATE_DIR": str(tmp)}
    log = (tmp / "gateway.log").open("wb")
    stack.procs.append(subprocess.Popen([sys.executable, "-m", "bizcloud", "gateway"], env=gw_env, stdout=log,
                                        stderr=subprocess.STDOUT))
    wait_for(lambda: _answers(f"{ADMIN}/healthz"), timeout=60, what="the gateway")
    yield stack
    for proc in reversed(stack.procs):
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _pod_of(response: httpx.Response) -> str:
    body = response.json()
    return str(body.get("pod") or body.get("pod_name") or body)


def _peer_ips(stack: Stack, key: str) -> set[str]:
    upstream = stack.table()["upstreams"]
    assert isinstance(upstream, dict)
    return {p["ip"] for p in (upstream.get(key) or {}).get("normal") or []}


def test_traffic_follows_pods_through_scale_delete_and_a_rolling_update(
        gateway_stack: Stack, kubectl: Kubectl, namespace: str, sample_image: str) -> None:
    service = f"gw-{uuid.uuid4().hex[:6]}"
    key = f"{service}/e2e"
    selector = f"bizcloud.io/service={service}"
    kubectl.apply(demo_deployment(name=service, namespace=namespace, image=sample_image, replicas=2))
    wait_for(lambda: len(ready_pods(kubectl, namespace, selector)) == 2, timeout=120, what="2 Ready pods")
    wait_for(lambda: httpx.get(f"{API}/api/v1/services/{service}").status_code == 200, timeout=30,
             what="the service in the catalog")
    engine = make_engine(gateway_stack.db_url)   # routes are written with a login; the store needs none
    CatalogStore(engine).create_route(host="*", path_prefix="/", service=service, env="e2e")
    engine.dispose()
    pods = {p["metadata"]["name"] for p in ready_pods(kubectl, namespace, selector)}
    wait_for(lambda: len(_peer_ips(gateway_stack, key)) == 2, timeout=30, what="2 peers in the gateway")
    workers = gateway_stack.workers()
    seen = {_pod_of(httpx.get(f"{GATEWAY}/")) for _ in range(10)}
    assert seen == pods

    # scale up: the new pod gets traffic
    kubectl.run("scale", f"deployment/{service}", "-n", namespace, "--replicas=3")
    wait_for(lambda: len(_peer_ips(gateway_stack, key)) == 3, timeout=60, what="the third peer")
    new = {p["metadata"]["name"] for p in ready_pods(kubectl, namespace, selector)} - pods
    assert new and new <= {_pod_of(httpx.get(f"{GATEWAY}/")) for _ in range(12)}

    # a bounded load loop while a pod is deleted and the Deployment rolls: zero failed requests
    failures: list[str] = []
    answered: list[tuple[float, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=GATEWAY, timeout=10) as client:
            while not stop.is_set() and len(answered) < 20_000:
                try:
                    response = client.get("/")
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:100]}")
                else:
                    answered.append((time.monotonic(), _pod_of(response)))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    victim = ready_pods(kubectl, namespace, selector)[0]
    victim_name, victim_ip = victim["metadata"]["name"], victim["status"]["podIP"]
    kubectl.run("delete", "pod", victim_name, "-n", namespace, "--wait=false")
    wait_for(lambda: victim_ip not in _peer_ips(gateway_stack, key), timeout=30, what="the DOWN",
             interval=0.02)
    removed_at = time.monotonic()
    kubectl.run("rollout", "restart", f"deployment/{service}", "-n", namespace)
    kubectl.run("rollout", "status", f"deployment/{service}", "-n", namespace, "--timeout=180s", timeout=200)
    time.sleep(2)
    stop.set()
    loader.join(timeout=30)
    assert failures == []
    assert len(answered) > 100
    late = [pod for at, pod in answered if at > removed_at + 0.1 and pod == victim_name]
    assert late == [], "no request reaches a pod after its DOWN"
    assert gateway_stack.workers() == workers, "instance changes never reload nginx"
    kubectl.run("delete", "deployment", service, "-n", namespace, "--wait=false")
