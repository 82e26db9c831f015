"""The worker against a real MariaDB pair and a real catalog database: grants follow the live
instances, every change is journaled with its reason, a restarted worker removes orphans, and a
server that is down leaves pending entries that converge when it returns.

Live instances are the monitor's values (``Instance``), given directly; the monitor itself and
the cluster are exercised end to end in ``tests/e2e/test_authz.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pymysql
import pytest
import yaml
from sqlalchemy import Engine

from bizcloud.authz import mariadb
from bizcloud.authz.grants import Kind
from bizcloud.authz.journal import AuthzStore
from bizcloud.authz.mariadb import MariaDbPair
from bizcloud.authz.mysql import MysqlExecutor
from bizcloud.authz.worker import REVISION_TTL_S, AuthzWorker
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.configcenter.store import ConfigStore
from bizcloud.kube.conditions import PodCondition
from bizcloud.monitor.instances import AUTHORIZED_GATE
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid
from tests.authz.conftest import MASTER_PORT, REPLICA_PORT, DictCredentials, admin_query, connect_as


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    migrate_engine(engine)
    yield engine
    engine.dispose()


def inventory_yaml(master: int, replica: int) -> str:
    return yaml.safe_dump({"kind": "Inventory", "mysql": {"main": {
        "master": {"host": "127.0.0.1", "port": master}, "slaves": [{"host": "127.0.0.1", "port": replica}],
        "admin": {"namespace": "bizcloud-system", "name": "mariadb-admin"}}}})


def service_yaml(user: str) -> str:
    return yaml.safe_dump({"kind": "Service", "name": "demo-api", "dependencies": {"mysql": [
        {"cluster": "main", "database": "demo", "user": user, "privileges": ["SELECT"],
         "roles": ["master", "slaves"]}]}})


def pod(ip: str) -> Instance:
    name = f"demo-api-{ip.rsplit('.', 1)[-1]}"
    return Instance(service="demo-api", env="dev", group=Group.NORMAL, namespace="bc-dev", pod=name,
                    uid=PodUid(f"uid-{name}"), ip=ip, ports={"soa": 20880}, ready=True)


class World:
    """A worker over a real store and executor; ``live`` is what the monitor would report."""

    def __init__(self, engine: Engine, credentials: DictCredentials, user: str) -> None:
        self.configs, self.store = ConfigStore(engine), AuthzStore(engine)
        self.credentials, self.user = credentials, user
        self._live: tuple[Instance, ...] = ()
        self.gates: list[tuple[str, PodCondition]] = []
        self.worker = self.restart()

    def restart(self, **options: float) -> AuthzWorker:
        """A new worker on the same database: what a monitor restart (or kill -9) leaves."""
        executor = MysqlExecutor(lambda: self.worker.inventory(), self.credentials)  # noqa: PLW0108 - late
        self.worker = AuthzWorker(configs=self.configs, store=self.store, executors={Kind.MYSQL: executor},
                                  live=lambda: self._live, retry_max=0.5, write_gate=self._write_gate,
                                  **options)
        return self.worker

    @property
    def live(self) -> tuple[Instance, ...]:
        """As the monitor hands them out: one immutable snapshot, the same object until it changes."""
        return self._live

    @live.setter
    def live(self, instances: Sequence[Instance]) -> None:
        self._live = tuple(instances)

    async def _write_gate(self, instance: Instance, condition: PodCondition) -> None:
        self.gates.append((instance.uid, condition))

    def accounts(self, port: int = MASTER_PORT) -> set[str]:
        rows = admin_query(self.pair, "SELECT Host FROM mysql.user WHERE User = %s", (self.user,),
                           replica=port != MASTER_PORT)
        return {str(r[0]) for r in rows}

    pair: MariaDbPair


@pytest.fixture
def world(engine: Engine, pair: MariaDbPair, credentials: DictCredentials) -> World:
    user = f"w_{uuid.uuid4().hex[:10]}"
    credentials.passwords[("demo-api", "dev", user)] = f"pw-{uuid.uuid4().hex}"
    w = World(engine, credentials, user)
    w.pair = pair
    w.configs.apply(inventory_yaml(MASTER_PORT, REPLICA_PORT) + "---\n" + service_yaml(user), author="test")
    return w


async def test_grants_follow_instances_with_reasons_and_journal(world: World) -> None:
    world.live = [pod("127.0.0.21"), pod("127.0.0.22")]
    await world.worker.converge(trigger="UP demo-api-21")
    assert world.accounts() == world.accounts(REPLICA_PORT) == {"127.0.0.21", "127.0.0.22"}
    password = world.credentials.passwords[("demo-api", "dev", world.user)]
    with connect_as(world.user, password, "127.0.0.21", port=REPLICA_PORT) as conn, conn.cursor() as c:
        c.execute("SELECT name FROM items WHERE id = 1")
        assert c.fetchone() == ("one",)

    [held_master, held_replica] = sorted(world.store.grants(ip="127.0.0.21"), key=lambda g: g.target)
    assert (held_master.state, held_master.target) == ("applied", f"main/127.0.0.1:{MASTER_PORT}")
    assert held_master.grant == f"{world.user} SELECT ON demo.*" and held_replica.state == "applied"
    [reason] = held_master.reasons
    assert (reason["pod"], reason["pod_uid"], reason["dependency"], reason["config_version"]) == (
        "demo-api-21", "uid-demo-api-21", "mysql[0]", 1)
    assert world.store.grants(service="demo-api") and not world.store.grants(service="other")

    world.live = [pod("127.0.0.22")]
    await world.worker.converge(trigger="DOWN demo-api-21 (uid-demo-api-21)")
    assert world.accounts() == world.accounts(REPLICA_PORT) == {"127.0.0.22"}
    assert world.store.grants(ip="127.0.0.21") == []
    lines = world.store.journal(ip="127.0.0.21")
    assert [(j.action, j.outcome) for j in lines] == [("revoke", "ok")] * 2 + [("grant", "ok")] * 2
    assert lines[0].trigger == "DOWN demo-api-21 (uid-demo-api-21)"
    assert lines[0].reasons[0]["pod"] == "demo-api-21"
    with pytest.raises(pymysql.err.OperationalError):
        connect_as(world.user, password, "127.0.0.21")
    assert password not in repr(world.store.journal()) + repr(world.store.grants())


async def test_a_restarted_worker_removes_orphans_it_never_saw_granted(world: World) -> None:
    world.live = [pod(f"127.0.0.{i}") for i in range(31, 36)]
    await world.worker.converge(trigger="UP")
    assert len(world.accounts()) == 5
    # The worker dies; pods die meanwhile; a new worker (no memory) starts with the survivors.
    world.live = [pod("127.0.0.33")]
    world.restart()
    await world.worker.converge(trigger="resync", everything=True)
    assert world.accounts() == world.accounts(REPLICA_PORT) == {"127.0.0.33"}


async def test_a_server_that_is_down_leaves_pending_entries_and_converges_when_back(
        engine: Engine, tmp_path: Path, credentials: DictCredentials) -> None:
    directory = tmp_path / "pair"
    own = mariadb.start_pair(directory, master_port=23180, replica_port=23190, bind=["127.0.0.1"])
    try:
        user = f"d_{uuid.uuid4().hex[:10]}"
        credentials = DictCredentials((own.admin_user, own.admin_password))
        credentials.passwords[("demo-api", "dev", user)] = "pw-" + uuid.uuid4().hex
        w = World(engine, credentials, user)
        w.pair = own
        w.configs.apply(inventory_yaml(23180, 23190) + "---\n" + service_yaml(user), author="test")
        mariadb.stop_pair(directory)
        w.live = [pod("127.0.0.41")]
        await w.worker.converge(trigger="UP demo-api-41")
        pending = w.store.grants(ip="127.0.0.41")
        assert {g.state for g in pending} == {"pending"} and len(pending) == 2
        assert all(g.error and g.target in g.error and "Connection refused" in g.error for g in pending)
        assert {(j.action, j.outcome) for j in w.store.journal(ip="127.0.0.41")} == {("grant", "pending")}
        assert own.admin_password not in repr(pending)

        mariadb.start_pair(directory, master_port=23180, replica_port=23190, bind=["127.0.0.1"])
        for _ in range(100):  # the worker retries on its own, with backoff capped at 0.5 s here
            if {g.state for g in w.store.grants(ip="127.0.0.41")} == {"applied"}:
                break
            await asyncio.sleep(0.2)
        assert {g.state for g in w.store.grants(ip="127.0.0.41")} == {"applied"}
        assert w.accounts(23180) == {"127.0.0.41"}
        assert ("grant", "ok") in {(j.action, j.outcome) for j in w.store.journal(ip="127.0.0.41")}
    finally:
        mariadb.stop_pair(directory)


async def test_kicks_fold_into_one_more_converge_and_the_gate_opens_once_granted(world: World) -> None:
    """A burst of new addresses costs two plans, not one per pod; the not-yet-Ready pod is granted
    and its gate is written once, after its accounts exist on both servers."""
    starting = dataclasses.replace(pod("127.0.0.41"), ready=False, authorized=False)
    world.live = [starting]
    converges: list[str] = []
    converge = world.worker.converge

    finished: list[str] = []

    async def counted(*, trigger: str, everything: bool = False) -> object:
        converges.append(trigger)
        result = await converge(trigger=trigger, everything=everything)
        finished.append(trigger)
        return result

    async def settled(count: int) -> None:
        for _ in range(200):
            if len(finished) >= count:
                await asyncio.sleep(0.2)  # time for a converge that should not come
                return
            await asyncio.sleep(0.05)

    world.worker.converge = counted  # type: ignore[method-assign]
    for i in range(5):  # before the first converge starts: all fold into it
        world.worker.kick(f"address {i}")
    await settled(1)
    assert converges == ["address 4"]
    assert world.accounts() == world.accounts(REPLICA_PORT) == {"127.0.0.41"}
    assert world.gates == [("uid-demo-api-41", PodCondition(AUTHORIZED_GATE, True, "GrantsInPlace",
                                                            "2 grants in place"))]
    world.worker.kick("a")
    await asyncio.sleep(0)  # its converge is running now
    world.worker.kick("b")
    world.worker.kick("c")  # both fold into one more converge after it
    await settled(3)
    assert converges == ["address 4", "a", "c"]
    assert len(world.gates) == 1  # said once; the pod shows it open once the monitor sees it


async def test_batches_and_kicks_share_converges_started_at_a_bounded_rate(world: World) -> None:
    """Under a stream of events the worker plans at most once per ``min_interval`` (the monitor's
    loop also feeds the gateway), yet each batch returns only after a converge that started after
    it arrived, so its pods' grants are in place by then."""
    interval = 0.1
    worker = world.restart(min_interval=interval)
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    converge = worker.converge

    async def timed(*, trigger: str, everything: bool = False) -> object:
        starts.append(loop.time())
        return await converge(trigger=trigger, everything=everything)

    worker.converge = timed  # type: ignore[method-assign]

    async def batch(ip: str) -> tuple[float, float, set[str]]:
        world.live = [*world.live, pod(ip)]
        asked = loop.time()
        event = InstanceEvent(type=EventType.UP, instance=pod(ip), observed_at=time.time())
        await worker.handle_batch([event])
        return asked, loop.time(), world.accounts()

    tasks = []
    began = loop.time()
    for i in range(12):  # an event every 25 ms for 0.3 s, a kick beside each
        tasks.append(asyncio.create_task(batch(f"127.0.0.{60 + i}")))
        worker.kick(f"address {i}")
        await asyncio.sleep(0.025)
    results = await asyncio.gather(*tasks)
    spent = loop.time() - began

    assert all(b - a >= interval * 0.99 for a, b in itertools.pairwise(starts)), starts
    assert len(starts) <= spent / interval + 1, (len(starts), spent)
    for i, (asked, answered, accounts) in enumerate(results):
        assert any(asked <= s <= answered for s in starts)  # a converge that began after it
        assert f"127.0.0.{60 + i}" in accounts
    assert world.accounts() == world.accounts(REPLICA_PORT) == {f"127.0.0.{60 + i}" for i in range(12)}


async def test_a_config_change_reaches_kicked_converges_within_the_revision_ttl(world: World) -> None:
    """Converges driven by pods reuse the config revision read within ``REVISION_TTL_S`` (the
    reconcile loop's poll catches a change sooner, and converges everything from a fresh read)."""
    reads: list[float] = []
    revision = world.configs.revision

    def counted() -> int:
        reads.append(time.monotonic())
        return revision()

    world.configs.revision = counted  # type: ignore[method-assign]
    world.live = [pod("127.0.0.51")]
    began = time.monotonic()
    for i in range(5):
        await world.worker.converge(trigger=f"kick {i}")
    assert world.accounts() == {"127.0.0.51"}
    assert len(reads) <= (time.monotonic() - began) / REVISION_TTL_S + 1
    world.configs.apply(inventory_yaml(MASTER_PORT, REPLICA_PORT) + "---\n" + yaml.safe_dump(
        {"kind": "Service", "name": "demo-api", "dependencies": {}}), author="test")
    before = len(reads)
    await world.worker.converge(trigger="config", everything=True)  # the reconcile loop's: fresh
    assert len(reads) == before + 1
    assert world.accounts() == world.accounts(REPLICA_PORT) == set()

    world.configs.apply(inventory_yaml(MASTER_PORT, REPLICA_PORT) + "---\n" + service_yaml(world.user),
                        author="test")
    await asyncio.sleep(REVISION_TTL_S)
    await world.worker.converge(trigger="kick")  # past the TTL: read again
    assert world.accounts() == world.accounts(REPLICA_PORT) == {"127.0.0.51"}


async def test_a_failing_server_holds_the_gate_with_the_target_named(
        engine: Engine, tmp_path: Path, credentials: DictCredentials) -> None:
    user = f"g_{uuid.uuid4().hex[:10]}"
    credentials.passwords[("demo-api", "dev", user)] = "pw"
    world = World(engine, credentials, user)
    world.configs.apply(inventory_yaml(23181, 23191) + "---\n" + service_yaml(user), author="test")  # nobody
    world.live = [dataclasses.replace(pod("127.0.0.42"), ready=False, authorized=False)]
    await world.worker.converge(trigger="UP")
    [(uid, held)] = world.gates
    assert (uid, held.status, held.reason) == ("uid-demo-api-42", False, "GrantFailing")
    assert "main/127.0.0.1:23181" in held.message and "main/127.0.0.1:23191" in held.message


async def test_each_new_snapshot_of_the_pods_is_looked_at_for_gates(world: World) -> None:
    """Converges against one unchanged snapshot reuse what they found waiting for a gate; a new
    snapshot (the monitor's table moved) is looked at again, so a newly gated pod is never missed."""
    first = dataclasses.replace(pod("127.0.0.61"), ready=False, authorized=False)
    world.live = [first]
    await world.worker.converge(trigger="UP 61")
    await world.worker.converge(trigger="again")  # the same snapshot: its gate was said already
    assert [uid for uid, _ in world.gates] == ["uid-demo-api-61"]
    second = dataclasses.replace(pod("127.0.0.62"), ready=False, authorized=False)
    world.live = [dataclasses.replace(first, authorized=True), second]
    await world.worker.converge(trigger="UP 62")
    said = [(uid, c.status) for uid, c in world.gates]
    assert said == [("uid-demo-api-61", True), ("uid-demo-api-62", True)]
    assert world.accounts() == {"127.0.0.61", "127.0.0.62"}
