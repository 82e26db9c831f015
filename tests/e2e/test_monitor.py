"""k8s-monitor end to end: real cluster, real monitor processes, the real catalog database.

Each test runs monitors as `bizcloud monitor` processes with their own SQLite catalog, Lease and
metrics port, short resync and lease periods, and works on a service name of its own, so it
neither sees nor disturbs what `make up` runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bizcloud import stack
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.cluster import lifecycle, processes
from bizcloud.kube.kubectl import Kubectl
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid
from bizcloud.settings import Settings
from tests.e2e.conftest import cli, demo_deployment, deploy_sample_alone, metric, ready_pods, wait_for

pytestmark = pytest.mark.e2e


class Monitors:
    """Starts and kills `bizcloud monitor` processes sharing one catalog and one Lease."""

    def __init__(self, tmp: Path) -> None:
        self.db_url = f"sqlite:///{tmp / 'catalog.db'}"
        self.lease = f"e2e-{uuid.uuid4().hex[:6]}"
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen[bytes], int]] = []
        engine = make_engine(self.db_url)
        migrate_engine(engine)
        self.store = CatalogStore(engine)

    def start(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = {**os.environ, "BIZCLOUD_DATABASE_URL": self.db_url, "BIZCLOUD_MONITOR_METRICS_PORT": str(port),
               "BIZCLOUD_MONITOR_LEASE_NAME": self.lease, "BIZCLOUD_MONITOR_RESYNC_S": "2",
               "BIZCLOUD_MONITOR_GRACE_S": "1", "BIZCLOUD_MONITOR_LEASE_DURATION_S": "3"}
        log = (self.tmp / f"monitor-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "bizcloud", "monitor"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append((proc, port))
        wait_for(lambda: metric(port, "bizcloud_monitor_leader") is not None, timeout=30,
                 what="the monitor's metrics endpoint")
        return proc, port

    def leaders(self) -> list[int]:
        return [port for proc, port in self.procs if proc.poll() is None
                and metric(port, "bizcloud_monitor_leader") == 1.0]

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a child process to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def monitors(tmp_path: Path, real_cluster: Settings) -> Iterator[Monitors]:
    group = Monitors(tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
def service() -> str:
    return f"mon-{uuid.uuid4().hex[:6]}"


def _live(kubectl: Kubectl, namespace: str, service: str) -> dict[str, str]:
    return {p["metadata"]["uid"]: p["status"]["podIP"]
            for p in ready_pods(kubectl, namespace, f"bizcloud.io/service={service}")}


def _catalogued(store: CatalogStore, service: str) -> dict[str, str | None]:
    return {i.uid: i.ip for i in store.instances(service=service)}


def _converged(kubectl: Kubectl, namespace: str, service: str, store: CatalogStore) -> Callable[[], bool]:
    return lambda: _catalogued(store, service) == _live(kubectl, namespace, service)


def _deploy(kubectl: Kubectl, namespace: str, service: str, image: str, *, replicas: int,
            group: str = "normal") -> str:
    name = f"{service}-{group}"
    kubectl.apply(demo_deployment(name=name, namespace=namespace, image=image, replicas=replicas,
                                  service=service, group=group))
    return name


def test_instances_follow_deployments_with_their_ips_and_groups(
        monitors: Monitors, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    monitors.start()
    _deploy(kubectl, namespace, service, sample_image, replicas=2)
    gray = _deploy(kubectl, namespace, service, sample_image, replicas=1, group="gray")
    wait_for(lambda: len(_live(kubectl, namespace, service)) == 3, timeout=90, what="3 Ready pods")
    wait_for(_converged(kubectl, namespace, service, monitors.store), timeout=10, what="the catalog")
    groups = sorted(i.group for i in monitors.store.instances(service=service))
    assert groups == [Group.GRAY, Group.NORMAL, Group.NORMAL]
    assert {i.env for i in monitors.store.instances(service=service)} == {"e2e"}
    assert all(i.ports == {"http": 8080} for i in monitors.store.instances(service=service))

    # One pod deleted: DOWN for it, then UP for its replacement, in that order in the stream.
    before = monitors.store.latest_revision()
    victim = next(iter(_live(kubectl, namespace, service)))
    victim_pod = next(i.pod for i in monitors.store.instances(service=service) if i.uid == victim)
    kubectl.run("delete", "pod", "-n", namespace, victim_pod, "--wait=false")
    wait_for(lambda: victim not in _catalogued(monitors.store, service), timeout=10,
             what="the deleted pod to leave the catalog")
    wait_for(lambda: len(_catalogued(monitors.store, service)) == 3, timeout=90, what="its replacement")
    changes = [c for c in monitors.store.changes_since(revision=before) if c.service == service]
    down_at = next(n for n, c in enumerate(changes) if c.type is EventType.DOWN and c.uid == victim)
    ups = [n for n, c in enumerate(changes) if c.type is EventType.UP and c.uid != victim]
    assert ups and min(ups) > down_at

    # Scale to zero: no instances left.
    kubectl.run("scale", "deployment", "-n", namespace, gray, f"{service}-normal", "--replicas=0")
    wait_for(lambda: _catalogued(monitors.store, service) == {}, timeout=30, what="an empty catalog")


def test_a_dirty_row_is_cleaned_within_one_resync(
        monitors: Monitors, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    monitors.start()
    ghost = Instance(service=service, env="e2e", group=Group.NORMAL, namespace=namespace, pod="ghost",
                     uid=PodUid(str(uuid.uuid4())), ip="10.88.255.254", ports={"http": 8080}, ready=True)
    monitors.store.apply_event(event=InstanceEvent(type=EventType.UP, instance=ghost))
    assert ghost.uid in _catalogued(monitors.store, service)
    # resync every 2 s, grace 1 s: the row is marked at one reconcile and removed by the next.
    wait_for(lambda: ghost.uid not in _catalogued(monitors.store, service), timeout=2 * 2 + 2,
             what="the dirty row to be removed")


def test_killing_the_monitor_during_churn_loses_nothing(
        monitors: Monitors, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    name = _deploy(kubectl, namespace, service, sample_image, replicas=4)
    rng = random.Random(7)
    for _ in range(3):
        proc, _port = monitors.start()
        deadline = time.monotonic() + rng.uniform(1.5, 3.0)
        while time.monotonic() < deadline:
            pods = ready_pods(kubectl, namespace, f"bizcloud.io/service={service}")
            if pods:
                victim = rng.choice(pods)["metadata"]["name"]
                kubectl.run("delete", "pod", "-n", namespace, victim, "--wait=false", check=False)
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    kubectl.run("scale", "deployment", "-n", namespace, name, "--replicas=3")
    monitors.start()
    wait_for(lambda: len(_live(kubectl, namespace, service)) == 3, timeout=120, what="3 Ready pods")
    wait_for(_converged(kubectl, namespace, service, monitors.store), timeout=15,
             what="the catalog to match the cluster exactly")


def test_two_monitors_one_leader_and_a_takeover(
        monitors: Monitors, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    first, first_port = monitors.start()
    second, _ = monitors.start()
    wait_for(lambda: len(monitors.leaders()) == 1, timeout=10, what="one leader")
    time.sleep(2)
    assert len(monitors.leaders()) == 1
    leader_port = monitors.leaders()[0]
    leader = first if leader_port == first_port else second
    name = _deploy(kubectl, namespace, service, sample_image, replicas=1)
    wait_for(lambda: len(_live(kubectl, namespace, service)) == 1, timeout=90, what="1 Ready pod")
    wait_for(_converged(kubectl, namespace, service, monitors.store), timeout=10, what="the catalog")

    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=10)
    killed_at = time.monotonic()
    wait_for(lambda: len(monitors.leaders()) == 1, timeout=10, interval=0.1, what="the standby to take over")
    # The lease (3 s) runs from the dead leader's last renewal, up to one jittered retry period
    # (0.4 s x 1.2) before the kill; the standby notices within one retry period; plus slack for
    # a loaded machine.
    assert time.monotonic() - killed_at <= 3 + 2 * 0.4 * 1.2 + 1.0
    kubectl.run("scale", "deployment", "-n", namespace, name, "--replicas=2")
    wait_for(lambda: len(_catalogued(monitors.store, service)) == 2, timeout=60,
             what="the new leader to dispatch")
    assert processes.alive(first.pid if leader is second else second.pid)


def test_the_server_and_monitor_of_make_up_catalogue_the_sample(real_cluster: Settings, tmp_path: Path
                                                               ) -> None:
    """What `make up` starts, on ports and a state directory of its own, against the real cluster."""
    settings = real_cluster.model_copy(update={
        "state_dir": tmp_path / "state", "kubeconfig": lifecycle.layout_of(real_cluster).admin_kubeconfig,
        "server_port": free_port(), "monitor_metrics_port": free_port(),
        "monitor_lease_name": f"e2e-{uuid.uuid4().hex[:6]}"})
    deploy_sample_alone(real_cluster)
    try:
        stack.start_daemons(settings, step=lambda _: None)
        stack.wait_for_sample_in_catalog(settings, timeout=30)
        env = stack.settings_env(settings)
        listed = json.loads(cli("instances", "demo-web", "--env", "dev", "--json", env=env).stdout)
        assert sorted(f"http://{i['ip']}:8080/" for i in listed) == sorted(stack.sample_urls(real_cluster))
        assert {i["group"] for i in listed} == {"normal"}
        services = json.loads(cli("services", "ls", "--json", env=env).stdout)
        assert "demo-web" in [s["name"] for s in services]
        openapi = httpx.get(f"{stack.api_url(settings)}/openapi.json", timeout=5).json()
        assert "/api/v1/services/{name}/instances" in openapi["paths"]
        metrics = httpx.get(stack.metrics_url(settings), timeout=5).text
        assert "bizcloud_monitor_delivery_latency_seconds_bucket" in metrics
        missing = cli("instances", "no-such-service", env=env, check=False)
        assert missing.returncode == 1
        assert "not found" in missing.stderr
    finally:
        assert set(stack.stop_daemons(settings)) == {"server", "monitor"}
