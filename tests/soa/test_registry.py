"""The registry writer against a real ZooKeeper: events in, Dubbo provider nodes out, reconciled.

The events are the monitor's values (``InstanceEvent``) handed in directly; the cluster-driven
version of these checks is ``tests/e2e/test_soa.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from prometheus_client import REGISTRY

from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid
from bizcloud.soa import zookeeper
from bizcloud.soa.registry import RegistryUnavailableError, SoaRegistry
from bizcloud.soa.urls import parse_provider, providers_path
from bizcloud.soa.watching import forget_zxid_when_suspended
from bizcloud.soa.zookeeper import ZooKeeperServer


def instance(ip: str, *, interfaces: str | None, group: Group = Group.NORMAL, port: int = 8080) -> Instance:
    uid = uuid.uuid4().hex
    return Instance(service="demo-api", env="t", group=group, namespace="bc-t", pod=f"demo-api-{uid[:5]}",
                    uid=PodUid(uid), ip=ip, ports={"soa": port}, ready=True, release="v1",
                    soa_interfaces=interfaces)


class Live:
    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}

    def __call__(self) -> list[Instance]:
        return list(self.instances.values())


@pytest.fixture
def live() -> Live:
    return Live()


@pytest.fixture
async def registry(zk_server: ZooKeeperServer, live: Live) -> AsyncIterator[SoaRegistry]:
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=15)
    yield SoaRegistry(client, live=live)
    client.stop()
    client.close()


def addresses(zk: KazooClient, interface: str) -> dict[str, str]:
    try:
        nodes = zk.get_children(providers_path(interface))
        return {parse_provider(n).address: parse_provider(n).group for n in nodes}
    except NoNodeError:
        return {}


async def up(registry: SoaRegistry, live: Live, i: Instance) -> None:
    live.instances[i.uid] = i
    await registry.handle(InstanceEvent(type=EventType.UP, instance=i))


async def down(registry: SoaRegistry, live: Live, i: Instance) -> None:
    live.instances.pop(i.uid, None)
    await registry.handle(InstanceEvent(type=EventType.DOWN, instance=i))


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("bizcloud_soa_refused_total", {"reason": reason}) or 0.0


async def test_up_writes_dubbo_nodes_down_removes_them(
        registry: SoaRegistry, live: Live, zk: KazooClient, interface: str) -> None:
    other = interface.replace("DemoApi", "Other")
    a = instance("10.9.0.1", interfaces=f"{interface},{other}")
    b = instance("10.9.0.2", interfaces=interface, group=Group.GRAY)
    await up(registry, live, a)
    await up(registry, live, b)
    await up(registry, live, b)  # replayed: idempotent
    assert addresses(zk, interface) == {"10.9.0.1:8080": "normal", "10.9.0.2:8080": "gray"}
    assert addresses(zk, other) == {"10.9.0.1:8080": "normal"}
    node = zk.get_children(providers_path(other))[0]
    assert zk.exists(f"{providers_path(other)}/{node}").ephemeralOwner == 0  # the registry's, not a session's
    await down(registry, live, a)
    await down(registry, live, a)
    assert addresses(zk, interface) == {"10.9.0.2:8080": "gray"}
    assert addresses(zk, other) == {}


async def test_a_changed_pod_leaves_its_old_nodes(
        registry: SoaRegistry, live: Live, zk: KazooClient, interface: str) -> None:
    a = instance("10.9.0.1", interfaces=interface)
    await up(registry, live, a)
    moved = Instance(**{**a.__dict__, "ports": {"soa": 9090}})
    live.instances[a.uid] = moved
    await registry.handle(InstanceEvent(type=EventType.CHANGED, instance=moved))
    assert addresses(zk, interface) == {"10.9.0.1:9090": "normal"}


async def test_http_only_pods_cost_no_zookeeper_call(registry: SoaRegistry, live: Live) -> None:
    web = Instance(**{**instance("10.9.0.5", interfaces=None).__dict__, "ports": {"http": 8080}})
    before = refused("no_annotation")
    registry._client.stop()  # any ZooKeeper call would now fail
    await registry.handle(InstanceEvent(type=EventType.UP, instance=web))
    await registry.handle(InstanceEvent(type=EventType.DOWN, instance=web))
    assert refused("no_annotation") == before  # an HTTP-only pod needs no annotation


async def test_bad_annotations_are_refused_counted_and_never_written(
        registry: SoaRegistry, live: Live, zk: KazooClient, interface: str) -> None:
    before = refused("bad_name"), refused("no_annotation")
    await up(registry, live, instance("10.9.0.3", interfaces=f"{interface},not valid!"))
    await up(registry, live, instance("10.9.0.4", interfaces=None))
    assert (refused("bad_name"), refused("no_annotation")) == (before[0] + 1, before[1] + 1)
    assert addresses(zk, interface) == {}
    assert await registry.reconcile() is not None
    assert addresses(zk, interface) == {}


async def test_reconcile_purges_zombies_and_restores_missing_nodes(
        registry: SoaRegistry, live: Live, zk: KazooClient, interface: str) -> None:
    a = instance("10.9.0.1", interfaces=interface)
    await up(registry, live, a)
    ghost = instance("10.9.0.66", interfaces=interface)
    live.instances[ghost.uid] = ghost
    await registry.reconcile()
    live.instances.pop(ghost.uid)  # died while nobody listened: a zombie node
    zombie = "dubbo%3A%2F%2F10.9.9.9%3A20880%2F" + interface + "%3Fside%3Dprovider"
    zk.create(f"{providers_path(interface)}/{zombie}", b"")  # and one written by hand
    a_node = next(n for n in zk.get_children(providers_path(interface)) if "10.9.0.1" in n)
    zk.delete(f"{providers_path(interface)}/{a_node}")  # and a live one lost
    actions = await registry.reconcile()
    assert len(actions.delete) == 2 and actions.create == ((interface, a_node),)
    assert addresses(zk, interface) == {"10.9.0.1:8080": "normal"}
    assert not (await registry.reconcile())  # converged: nothing more to do


@pytest.fixture
def second_zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(root=tmp_path_factory.mktemp("zk2"), port=22183)
    zookeeper.start(server)
    yield server
    zookeeper.stop(server)


async def test_zookeeper_away_fails_the_write_for_a_retry_and_loses_nothing(
        second_zk: ZooKeeperServer, live: Live, interface: str) -> None:
    client = KazooClient(hosts=second_zk.hosts, connection_retry={"max_tries": -1, "max_delay": 0.5})
    forget_zxid_when_suspended(client)
    client.start(timeout=15)
    registry = SoaRegistry(client, live=live)
    try:
        a = instance("10.9.0.1", interfaces=interface)
        await up(registry, live, a)
        zookeeper.stop(second_zk)
        b = instance("10.9.0.2", interfaces=interface)
        live.instances[b.uid] = b
        with pytest.raises(RegistryUnavailableError, match="ZooKeeper refused"):
            await registry.handle(InstanceEvent(type=EventType.UP, instance=b))
        zookeeper.start(second_zk)
        for _ in range(100):  # what the dispatcher does: retry until it goes through
            try:
                await registry.handle(InstanceEvent(type=EventType.UP, instance=b))
                break
            except RegistryUnavailableError:
                await asyncio.sleep(0.1)
        assert addresses(client, interface) == {"10.9.0.1:8080": "normal", "10.9.0.2:8080": "normal"}

        # Restarted on wiped data: the server refuses clients that saw newer zxids, unless they
        # forget them; then one reconcile writes everything back.
        zookeeper.stop(second_zk)
        shutil.rmtree(second_zk.data_dir)
        zookeeper.start(second_zk)
        for _ in range(100):
            try:
                await registry.reconcile()
                break
            except RegistryUnavailableError:
                await asyncio.sleep(0.1)
        assert addresses(client, interface) == {"10.9.0.1:8080": "normal", "10.9.0.2:8080": "normal"}
    finally:
        client.stop()
        client.close()
