"""The SOA registry end to end: real cluster, a real `bizcloud monitor` process, a real ZooKeeper.

The module runs its own ZooKeeper (port 22181, files under the test's temporary directory) and
one monitor process with its own SQLite catalog, Lease and metrics port and a 2 s resync, on a
service name of its own, so it neither sees nor disturbs what `make up` runs. Pods of the sample
image expose their port under the name ``soa`` and declare an interface in the
``bizcloud.io/soa-interfaces`` annotation, as an SOA provider does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError

from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper
from bizcloud.soa.consumer import Consumer, write_gray_policy
from bizcloud.soa.urls import parse_provider, providers_path
from bizcloud.soa.watching import forget_zxid_when_suspended
from bizcloud.soa.zookeeper import ZooKeeperServer
from bizcloud.usersplit import GrayPolicy, bucket
from tests.e2e.conftest import demo_deployment, metric, ready_pods, wait_for

pytestmark = pytest.mark.e2e

ZK_PORT = 22181
METRICS_PORT = 18811
RESYNC_S = 2.0


def soa_deployment(*, name: str, namespace: str, image: str, replicas: int, service: str, group: str,
                   interfaces: str) -> str:
    """The sample app as an SOA provider: its port named ``soa``, its interfaces annotated."""
    doc: dict[str, Any] = json.loads(demo_deployment(name=name, namespace=namespace, image=image,
                                                     replicas=replicas, service=service, group=group))
    template = doc["spec"]["template"]
    template["metadata"]["annotations"] = {"bizcloud.io/soa-interfaces": interfaces}
    container = template["spec"]["containers"][0]
    container["ports"] = [{"name": "soa", "containerPort": 8080}]
    container["readinessProbe"]["httpGet"]["port"] = "soa"
    return json.dumps(doc)


class Registry:
    """The module's ZooKeeper and monitor, and helpers to look at both."""

    def __init__(self, tmp: Path, real_cluster: Settings) -> None:
        self.zk_server = ZooKeeperServer(root=tmp, port=ZK_PORT)
        zookeeper.start(self.zk_server)
        self.db_url = f"sqlite:///{tmp / 'catalog.db'}"
        engine = make_engine(self.db_url)
        migrate_engine(engine)
        self.store = CatalogStore(engine)
        env = {**os.environ, "BIZCLOUD_DATABASE_URL": self.db_url,
               "BIZCLOUD_MONITOR_METRICS_PORT": str(METRICS_PORT),
               "BIZCLOUD_MONITOR_LEASE_NAME": f"e2e-soa-{uuid.uuid4().hex[:6]}",
               "BIZCLOUD_MONITOR_RESYNC_S": str(RESYNC_S), "BIZCLOUD_MONITOR_GRACE_S": "1",
               "BIZCLOUD_MONITOR_LEASE_DURATION_S": "3", "BIZCLOUD_ZOOKEEPER_HOSTS": self.zk_server.hosts}
        self.log = tmp / "monitor.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "bizcloud", "monitor"], env=env,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.metric("bizcloud_monitor_leader") == 1.0, timeout=40, what="a leading monitor")
        self.zk = KazooClient(hosts=self.zk_server.hosts, connection_retry={"max_tries": -1, "max_delay": 1})
        forget_zxid_when_suspended(self.zk)  # ZooKeeper is restarted on wiped data below
        self.zk.start(timeout=15)

    def metric(self, name: str) -> float | None:
        return metric(METRICS_PORT, name)

    def providers(self, interface: str) -> dict[str, str]:
        """address -> group of the provider nodes of ``interface``."""
        try:
            nodes = self.zk.get_children_async(providers_path(interface)).get(timeout=5)
        except (NoNodeError, KazooException, self.zk.handler.timeout_exception):
            return {}
        return {parse_provider(n).address: parse_provider(n).group for n in nodes}

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        zookeeper.stop(self.zk_server)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, real_cluster: Settings) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("soa"), real_cluster)
    yield reg
    reg.close()


@pytest.fixture
def service() -> str:
    return f"soa-{uuid.uuid4().hex[:6]}"


def live(kubectl: Kubectl, namespace: str, service: str) -> dict[str, str]:
    """address -> group of the Ready pods of ``service``."""
    return {f"{p['status']['podIP']}:8080": p["metadata"]["labels"]["bizcloud.io/group"]
            for p in ready_pods(kubectl, namespace, f"bizcloud.io/service={service}")}


def deploy(kubectl: Kubectl, namespace: str, image: str, service: str, interface: str, *, replicas: int,
           group: str = "normal", interfaces: str | None = None) -> str:
    name = f"{service}-{group}"
    kubectl.apply(soa_deployment(name=name, namespace=namespace, image=image, replicas=replicas,
                                 service=service, group=group, interfaces=interfaces or interface))
    return name


def test_providers_follow_pods_consumers_follow_providers_and_zombies_go(
        registry: Registry, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    interface = f"com.example.{service.replace('-', '')}.DemoApi"
    deploy(kubectl, namespace, sample_image, service, interface, replicas=2)
    gray = deploy(kubectl, namespace, sample_image, service, interface, replicas=1, group="gray")
    wait_for(lambda: len(live(kubectl, namespace, service)) == 3, timeout=120, what="3 Ready pods")
    wait_for(lambda: registry.providers(interface) == live(kubectl, namespace, service), timeout=15,
             what="provider nodes with the pods' IPs and groups")
    assert sorted(registry.providers(interface).values()) == ["gray", "normal", "normal"]

    # A consumer of the SDK, with the gateway's user split.
    watched: set[str] = set()
    gone_at: dict[str, float] = {}

    def changed(providers: list[Any]) -> None:  # kazoo's thread, the moment the node list changes
        now, addresses = time.monotonic(), {p.address for p in providers}
        for address in watched - addresses:
            gone_at.setdefault(address, now)

    with Consumer(registry.zk_server.hosts, interface, service=service, on_change=changed) as consumer:
        wait_for(lambda: len(consumer.providers()) == 3, timeout=5, what="the consumer's providers")
        write_gray_policy(registry.zk, service, GrayPolicy(ratio=40))
        wait_for(lambda: consumer.policy.ratio == 40, timeout=5, what="the gray policy")
        for user in (f"user-{i}" for i in range(200)):
            assert consumer.pick(user).group == ("gray" if bucket(user) < 4000 else "normal")

        # DOWN -> the consumer stops using the pod: from `kubectl delete` to the watch callback.
        victim = next(p for p in ready_pods(kubectl, namespace, f"app={service}-normal"))
        address = f"{victim['status']['podIP']}:8080"
        watched.add(address)
        started = time.monotonic()
        kubectl.run("delete", "pod", "-n", namespace, victim["metadata"]["name"], "--wait=false")
        wait_for(lambda: address not in {p.address for p in consumer.providers()}, timeout=10,
                 what="the consumer to drop the deleted pod")
        latency = gone_at[address] - started
        print(f"\nDOWN (kubectl delete) -> consumer stopped using {address}: {latency * 1000:.0f} ms")
        assert latency < 5.0
        assert all(consumer.pick(f"u{i}").address != address for i in range(50))

    # A zombie written by hand is purged within one resync.
    zombie = f"{providers_path(interface)}/dubbo%3A%2F%2F10.99.0.1%3A20880%2F{interface}%3Fside%3Dprovider"
    registry.zk.create(zombie, b"")
    wait_for(lambda: not registry.zk.exists(zombie), timeout=RESYNC_S * 2 + 3, what="the zombie to be purged")

    # Pods gone: their nodes go.
    kubectl.run("scale", "deployment", gray, "-n", namespace, "--replicas=0")
    wait_for(lambda: "gray" not in registry.providers(interface).values(), timeout=30,
             what="the gray provider's node to go")
    wait_for(lambda: registry.providers(interface) == live(kubectl, namespace, service), timeout=60,
             what="the registry to match the pods")


def test_malformed_annotations_are_refused_counted_never_written(
        registry: Registry, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    before = registry.metric('bizcloud_soa_refused_total{reason="bad_name"}') or 0.0
    interface = f"com.example.{service.replace('-', '')}.DemoApi"
    deploy(kubectl, namespace, sample_image, service, interface, replicas=1,
           interfaces=f"{interface}, not an/iface")
    wait_for(lambda: len(live(kubectl, namespace, service)) == 1, timeout=120, what="a Ready pod")
    wait_for(lambda: (registry.metric('bizcloud_soa_refused_total{reason="bad_name"}') or 0.0) > before,
             timeout=15, what="the refusal to be counted")
    assert registry.providers(interface) == {}
    assert "reason=bad_name" in registry.log.read_text()


def test_zookeeper_away_then_back_and_restarted_empty(
        registry: Registry, kubectl: Kubectl, namespace: str, sample_image: str, service: str) -> None:
    interface = f"com.example.{service.replace('-', '')}.DemoApi"
    name = deploy(kubectl, namespace, sample_image, service, interface, replicas=1)
    wait_for(lambda: len(live(kubectl, namespace, service)) == 1, timeout=120, what="a Ready pod")
    wait_for(lambda: registry.providers(interface) == live(kubectl, namespace, service), timeout=15,
             what="the provider node")

    # Unreachable: the pending write is retried (journaled), and applied once ZooKeeper is back.
    zookeeper.stop(registry.zk_server)
    kubectl.run("scale", "deployment", name, "-n", namespace, "--replicas=2")
    wait_for(lambda: len(live(kubectl, namespace, service)) == 2, timeout=120, what="2 Ready pods")
    wait_for(lambda: any(e["subscriber"] == "soa" and e["outcome"] == "retry"
                         for e in registry.store.journal(limit=200)), timeout=30,
             what="the journal to show the pending write being retried")
    zookeeper.start(registry.zk_server)
    wait_for(lambda: registry.providers(interface) == live(kubectl, namespace, service), timeout=45,
             what="the pending write to land after ZooKeeper came back")

    # Restarted on empty data: the registry is rebuilt by reconcile.
    zookeeper.stop(registry.zk_server)
    shutil.rmtree(registry.zk_server.data_dir)
    zookeeper.start(registry.zk_server)
    wait_for(lambda: registry.providers(interface) == live(kubectl, namespace, service), timeout=30,
             what="the registry to be restored after ZooKeeper lost its data")
