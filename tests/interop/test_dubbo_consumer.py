"""Interop: a real Apache Dubbo consumer (3.2, from Maven Central) reads what BizCloud registered.

The registry writer puts providers (normal and gray, one whitelist) into a real ZooKeeper; the
Java program in ``dubbo-consumer/`` looks the interface up through Dubbo's own ZookeeperRegistry
(Curator), URL decoding and consumer/provider matching, and prints what it found. Built by
``dubbo-consumer/build.sh`` (Maven; about 20 s once the dependencies are in ~/.m2).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid
from bizcloud.soa import zookeeper
from bizcloud.soa.registry import SoaRegistry
from bizcloud.soa.zookeeper import ZooKeeperServer

PROJECT = Path(__file__).resolve().parent / "dubbo-consumer"
PORT = 22185


@pytest.fixture(scope="module")
def consumer_classpath() -> str:
    if shutil.which("mvn") is None or shutil.which("java") is None:
        pytest.skip("Maven and a JDK are needed to build the Dubbo consumer: run `make setup`")
    build = subprocess.run([str(PROJECT / "build.sh")], capture_output=True, text=True, timeout=900,
                           check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return f"{PROJECT / 'target' / 'classes'}:{PROJECT / 'target' / 'dependency'}/*"


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(root=tmp_path_factory.mktemp("zk-interop"), port=PORT)
    zookeeper.start(server)
    yield server
    zookeeper.stop(server)


def _instance(ip: str, interface: str, group: Group) -> Instance:
    uid = uuid.uuid4().hex
    return Instance(service="demo-api", env="dev", group=group, namespace="bc-dev", pod=f"demo-api-{uid[:5]}",
                    uid=PodUid(uid), ip=ip, ports={"soa": 20880}, ready=True, soa_interfaces=interface)


async def test_a_dubbo_consumer_lists_the_providers_bizcloud_registered(
        consumer_classpath: str, zk_server: ZooKeeperServer) -> None:
    interface = f"io.bizcloud.interop{uuid.uuid4().hex[:6]}.DemoApi"
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=15)
    try:
        pods = [_instance("10.88.7.1", interface, Group.NORMAL),
                _instance("10.88.7.2", interface, Group.NORMAL),
                _instance("10.88.7.3", interface, Group.GRAY)]
        registry = SoaRegistry(client, live=lambda: pods)
        for pod in pods:
            await registry.handle(InstanceEvent(type=EventType.UP, instance=pod))
    finally:
        client.stop()
        client.close()
    java = subprocess.run(["java", "-cp", consumer_classpath, "io.bizcloud.interop.ListProviders",
                           zk_server.hosts, interface], capture_output=True, text=True, timeout=120,
                          check=False)
    assert java.returncode == 0, java.stdout[-3000:] + java.stderr[-3000:]
    found = sorted(line for line in java.stdout.splitlines() if line.startswith("PROVIDER "))
    assert found == [
        "PROVIDER address=10.88.7.1:20880 protocol=rest tag= application=demo-api",
        "PROVIDER address=10.88.7.2:20880 protocol=rest tag= application=demo-api",
        "PROVIDER address=10.88.7.3:20880 protocol=rest tag=gray application=demo-api",
    ], java.stdout + java.stderr[-2000:]
