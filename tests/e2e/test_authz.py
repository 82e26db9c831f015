"""Automatic authorization end to end: real cluster, a real `bizcloud monitor`, MariaDB and ZooKeeper.

The module runs its own MariaDB master + replica (ports 33216/33217, bound to loopback and the
node's address, where pods reach them), its own ZooKeeper (22182), its own SQLite catalog holding
the inventory and two service configs, and one monitor process (its own Lease and metrics port),
so it neither sees nor disturbs what `make up` runs. The pods are the sample image: ``api`` has a
MySQL dependency (SELECT and INSERT on master and replica), ``web`` consumes an SOA interface.
From inside an ``api`` pod, PyMySQL (bundled into the image) connects with the password the pod
reads from the Secret BizCloud created, as an application would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kazoo.client import KazooClient

from bizcloud.authz import mariadb
from bizcloud.authz.credentials import KubeCredentials, service_secret_name
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.cluster import lifecycle
from bizcloud.cluster.host import node_ip
from bizcloud.configcenter.schema import SecretRef
from bizcloud.configcenter.store import ConfigStore
from bizcloud.kube import config as kube_config
from bizcloud.kube.client import KubeClient
from bizcloud.kube.conditions import PodCondition, set_pod_condition
from bizcloud.kube.errors import KubeApiError
from bizcloud.kube.kubectl import Kubectl
from bizcloud.monitor.instances import AUTHORIZED_GATE
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper
from bizcloud.soa.whitelist import get_whitelist
from bizcloud.soa.zookeeper import ZooKeeperServer
from tests.e2e.conftest import demo_deployment, metric, ready_pods, wait_for

pytestmark = pytest.mark.e2e

MASTER_PORT, REPLICA_PORT = 33216, 33217
ZK_PORT = 22182
METRICS_PORT = 18812
SUFFIX = uuid.uuid4().hex[:5]
API, WEB = f"authz-api-{SUFFIX}", f"authz-web-{SUFFIX}"
USER = f"api_{SUFFIX}"
INTERFACE = f"io.bizcloud.e2e.Authz{SUFFIX}"


def deployment(kind: str, *, namespace: str, image: str, replicas: int) -> str:
    """The sample app with the namespace's environment; ``api`` gets its MySQL settings and Secret."""
    name = API if kind == "api" else WEB
    doc: dict[str, Any] = json.loads(demo_deployment(name=name, namespace=namespace, image=image,
                                                     replicas=replicas, service=name))
    env_name = namespace.removeprefix("bc-")
    for labels in (doc["metadata"]["labels"], doc["spec"]["template"]["metadata"]["labels"]):
        labels["bizcloud.io/env"] = env_name
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["env"] += [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]
    if kind == "api":
        container["env"] += [
            {"name": "MYSQL_USER", "value": USER},
            {"name": "MYSQL_PASSWORD",
             "valueFrom": {"secretKeyRef": {"name": service_secret_name(API), "key": USER}}}]
    return json.dumps(doc)


class Stack:
    """The module's MariaDB pair, ZooKeeper, catalog and monitor, and helpers to look at them."""

    def __init__(self, tmp: Path, settings: Settings, namespace: str) -> None:
        self.tmp, self.namespace = tmp, namespace
        self.env = namespace.removeprefix("bc-")
        self.pair = mariadb.start_pair(tmp / "mariadb", master_port=MASTER_PORT, replica_port=REPLICA_PORT)
        mariadb.create_database(self.pair, "e2e", [
            "CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v TEXT)",
            "INSERT IGNORE INTO t VALUES (1, 'granted')"])
        self.zk_server = ZooKeeperServer(root=tmp / "zk", port=ZK_PORT)
        zookeeper.start(self.zk_server)
        self.zk = KazooClient(hosts=self.zk_server.hosts)
        self.zk.start(timeout=15)
        self.db_url = f"sqlite:///{tmp / 'catalog.db'}"
        engine = make_engine(self.db_url)
        migrate_engine(engine)
        admin = SecretRef(namespace=namespace, name="mariadb-admin")
        asyncio.run(self._store_admin(settings, admin))
        host = node_ip()
        inventory = {"kind": "Inventory", "mysql": {"e2e": {
            "master": {"host": host, "port": MASTER_PORT}, "slaves": [{"host": host, "port": REPLICA_PORT}],
            "admin": admin.model_dump(include={"namespace", "name"}), "environments": [self.env]}}}
        api = {"kind": "Service", "name": API, "resources": {self.env: {}}, "dependencies": {"mysql": [
            {"cluster": "e2e", "database": "e2e", "user": USER, "privileges": ["SELECT", "INSERT"],
             "roles": ["master", "slaves"]}]}}
        web = {"kind": "Service", "name": WEB, "dependencies": {"soa": [{"interfaces": [INTERFACE]}]}}
        ConfigStore(engine).apply(yaml.safe_dump_all([inventory, api, web]), author="e2e")
        engine.dispose()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_monitor()

    async def _store_admin(self, settings: Settings, ref: SecretRef) -> None:
        config = kube_config.load(lifecycle.kubeconfig_path(settings))
        async with KubeClient.from_config(config) as client:
            await KubeCredentials(client).store_admin(ref, self.pair.admin_user, self.pair.admin_password)

    def start_monitor(self) -> None:
        env = {**os.environ, "BIZCLOUD_DATABASE_URL": self.db_url,
               "BIZCLOUD_MONITOR_METRICS_PORT": str(METRICS_PORT),
               "BIZCLOUD_MONITOR_LEASE_NAME": f"e2e-authz-{SUFFIX}",
               "BIZCLOUD_MONITOR_RESYNC_S": "2", "BIZCLOUD_MONITOR_GRACE_S": "1",
               "BIZCLOUD_MONITOR_LEASE_DURATION_S": "3", "BIZCLOUD_ZOOKEEPER_HOSTS": self.zk_server.hosts,
               "BIZCLOUD_AUTHZ_RETRY_MAX_S": "1"}
        log = (self.tmp / "monitor.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bizcloud", "monitor"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: self.metric("bizcloud_monitor_leader") == 1.0, timeout=40, what="a leading monitor")

    def kill_monitor(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def metric(self, name: str) -> float | None:
        return metric(METRICS_PORT, name)

    def accounts(self, *, replica: bool = False) -> set[str]:
        with mariadb.connect(self.pair, replica=replica) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT Host FROM mysql.user WHERE User = %s", (USER,))
            return {str(row[0]) for row in cursor.fetchall()}

    def whitelist(self) -> frozenset[str] | None:
        return get_whitelist(self.zk, INTERFACE)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.zk.stop()
        self.zk.close()
        zookeeper.stop(self.zk_server)
        mariadb.stop_pair(self.tmp / "mariadb")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, real_cluster: Settings, namespace: str,
          kubectl: Kubectl) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("authz"), real_cluster, namespace)
    try:
        # The worker creates the service's password Secret from its config's environments.
        wait_for(lambda: kubectl.run("get", "secret", service_secret_name(API), "-n", namespace,
                                     check=False).returncode == 0, timeout=30, what="the password Secret")
        yield s
    finally:
        s.close()


def pod_ips(kubectl: Kubectl, namespace: str, name: str) -> set[str]:
    return {p["status"]["podIP"] for p in ready_pods(kubectl, namespace, f"app={name}")}


def exactly(kubectl: Kubectl, namespace: str, name: str, count: int) -> set[str] | None:
    """The IPs of ``name``'s pods once exactly ``count`` exist and all are Ready (None before)."""
    ips = pod_ips(kubectl, namespace, name)
    pods = kubectl.get_json("pods", "-n", namespace, "-l", f"app={name}")["items"]
    return ips if len(ips) == count == len(pods) else None


IN_POD = textwrap.dedent("""
    import json, os, pymysql
    def session(port):
        return pymysql.connect(host=os.environ["HOST_IP"], port=port, user=os.environ["MYSQL_USER"],
                               password=os.environ["MYSQL_PASSWORD"], database="e2e", connect_timeout=3,
                               autocommit=True)
    result = {}
    for name, port in (("master", %(master)d), ("replica", %(replica)d)):
        try:
            with session(port) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT v FROM t WHERE id = 1")
                result[name + "_select"] = cursor.fetchone()[0]
                if name == "master":
                    cursor.execute("INSERT INTO t VALUES (%%s, 'from a pod')", (100 + os.getpid() %% 1000,))
                    result["master_insert"] = cursor.rowcount
                    try:
                        cursor.execute("DELETE FROM t WHERE id = 1")
                        result["master_delete"] = "allowed"
                    except pymysql.MySQLError as e:
                        result["master_delete"] = e.args[0]
        except pymysql.MySQLError as e:
            result[name + "_error"] = e.args[0]
    print(json.dumps(result))
""")


def test_pods_get_exactly_their_grants_on_master_and_replica(stack: Stack, kubectl: Kubectl, namespace: str,
                                                             sample_image: str) -> None:
    kubectl.run("apply", "-f", "-", stdin=deployment("api", namespace=namespace, image=sample_image,
                                                       replicas=2))
    ips = wait_for(lambda: exactly(kubectl, namespace, API, 2),
                   timeout=120, what="two Ready api pods")
    wait_for(lambda: stack.accounts() == ips and stack.accounts(replica=True) == ips, timeout=15,
             what=f"accounts for {sorted(ips)} on master and replica")
    pod = ready_pods(kubectl, namespace, f"app={API}")[0]["metadata"]["name"]
    script = IN_POD % {"master": MASTER_PORT, "replica": REPLICA_PORT}
    out = kubectl.run("exec", "-n", namespace, pod, "--", "python3", "-c", script, timeout=60).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"master_select": "granted", "master_insert": 1, "master_delete": 1142,
                      "replica_select": "granted"}, result


def test_a_deleted_pod_loses_its_account_and_its_replacement_gets_one(stack: Stack, kubectl: Kubectl,
                                                                       namespace: str) -> None:
    [victim, *_] = ready_pods(kubectl, namespace, f"app={API}")
    ip = victim["status"]["podIP"]
    assert ip in stack.accounts()
    kubectl.run("delete", "pod", "-n", namespace, victim["metadata"]["name"], "--wait=false")
    wait_for(lambda: ip not in stack.accounts() and ip not in stack.accounts(replica=True), timeout=10,
             what=f"the account of deleted pod {ip} dropped on master and replica")
    ips = wait_for(lambda: exactly(kubectl, namespace, API, 2),
                   timeout=120, what="the replacement pod Ready")
    wait_for(lambda: stack.accounts() == ips == stack.accounts(replica=True), timeout=15,
             what="accounts for exactly the two live pods")


def test_the_soa_whitelist_follows_the_consumer_pods(stack: Stack, kubectl: Kubectl, namespace: str,
                                                     sample_image: str) -> None:
    kubectl.run("apply", "-f", "-", stdin=deployment("web", namespace=namespace, image=sample_image,
                                                       replicas=2))
    ips = wait_for(lambda: exactly(kubectl, namespace, WEB, 2),
                   timeout=120, what="two Ready web pods")
    wait_for(lambda: stack.whitelist() == ips, timeout=15, what=f"the whitelist of {INTERFACE} = {ips}")
    kubectl.run("scale", "deployment", WEB, "-n", namespace, "--replicas=1")
    survivor = wait_for(lambda: exactly(kubectl, namespace, WEB, 1),
                        timeout=60, what="one web pod left")
    wait_for(lambda: stack.whitelist() == survivor, timeout=15, what="the scaled-down pod off the whitelist")


def test_a_killed_worker_converges_with_no_orphan_grant(stack: Stack, kubectl: Kubectl,
                                                        namespace: str) -> None:
    kubectl.run("scale", "deployment", API, "-n", namespace, "--replicas=5")
    before = set(stack.accounts())
    # Kill the monitor (and its worker) half-way: as soon as some of the new pods have accounts.
    wait_for(lambda: len(stack.accounts() - before) >= 1, timeout=120, what="the first new pod granted")
    stack.kill_monitor()
    granted_while_alive = stack.accounts()
    kubectl.run("scale", "deployment", API, "-n", namespace, "--replicas=1")
    survivors = wait_for(lambda: exactly(kubectl, namespace, API, 1), timeout=120, what="one api pod left")
    assert granted_while_alive - survivors, "the test must leave orphans behind while the worker is dead"
    assert stack.accounts() == granted_while_alive  # nobody cleaned up: the worker was dead
    stack.start_monitor()
    wait_for(lambda: stack.accounts() == survivors == stack.accounts(replica=True), timeout=30,
             what=f"exactly {survivors} granted after the restart")


def gated_deployment(*, name: str, service: str, env: str, namespace: str, image: str) -> str:
    """The sample app with the ``bizcloud.io/authorized`` readiness gate, as release templates make it."""
    doc: dict[str, Any] = json.loads(demo_deployment(name=name, namespace=namespace, image=image,
                                                     replicas=1, service=service))
    for labels in (doc["metadata"]["labels"], doc["spec"]["template"]["metadata"]["labels"]):
        labels["bizcloud.io/env"] = env
    doc["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": AUTHORIZED_GATE}]
    return json.dumps(doc)


def conditions(kubectl: Kubectl, namespace: str, name: str) -> tuple[str, dict[str, dict[str, str]]] | None:
    """The one pod of Deployment ``name`` with an IP: (its IP, its conditions by type); None before."""
    pods = kubectl.get_json("pods", "-n", namespace, "-l", f"app={name}")["items"]
    live = [p for p in pods if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")]
    if len(live) != 1:
        return None
    return live[0]["status"]["podIP"], {c["type"]: c for c in live[0]["status"].get("conditions", [])}


def once(kubectl: Kubectl, namespace: str, name: str,
         kind: str) -> tuple[str, dict[str, dict[str, str]]] | None:
    """``conditions`` once condition ``kind`` is True (None before)."""
    seen = conditions(kubectl, namespace, name)
    return seen if seen is not None and seen[1].get(kind, {}).get("status") == "True" else None


def test_a_gated_pod_is_ready_once_its_grants_are_in_place(stack: Stack, kubectl: Kubectl, namespace: str,
                                                           sample_image: str) -> None:
    """Pods made by the release templates wait for the gate: the monitor opens it after the grants."""
    name = f"{API}-gated"
    kubectl.run("apply", "-f", "-", stdin=gated_deployment(name=name, service=API, env=stack.env,
                                                             namespace=namespace, image=sample_image))
    ip, by_type = wait_for(lambda: once(kubectl, namespace, name, "Ready"), timeout=120,
                           what="the gated pod Ready")
    gate = by_type[AUTHORIZED_GATE]
    assert (gate["status"], gate["reason"]) == ("True", "GrantsInPlace"), gate
    assert gate["message"] == "2 grants in place"  # SELECT+INSERT on the master and on the replica
    assert ip in stack.accounts() and ip in stack.accounts(replica=True)
    kubectl.run("delete", "deployment", name, "-n", namespace)


def test_a_gated_pod_whose_grant_is_refused_is_let_through_and_says_why(
        stack: Stack, kubectl: Kubectl, namespace: str, sample_image: str) -> None:
    """An environment the MySQL cluster does not serve: refused for good, so waiting would only
    stick the rollout; the pod becomes Ready, without an account, and its condition names it."""
    name = f"{API}-refused"
    kubectl.run("apply", "-f", "-", stdin=gated_deployment(name=name, service=API, env="elsewhere",
                                                             namespace=namespace, image=sample_image))
    ip, by_type = wait_for(lambda: once(kubectl, namespace, name, "Ready"), timeout=120,
                           what="the refused pod Ready")
    gate = by_type[AUTHORIZED_GATE]
    assert (gate["status"], gate["reason"]) == ("True", "GrantsInPlace"), gate
    assert gate["message"].startswith("0 grants in place; refused: mysql[0]:"), gate["message"]
    assert "elsewhere" in gate["message"]
    assert ip not in stack.accounts()
    kubectl.run("delete", "deployment", name, "-n", namespace)


def test_a_gated_pod_waits_while_its_grant_fails_and_is_let_in_when_it_succeeds(
        stack: Stack, kubectl: Kubectl, namespace: str, sample_image: str) -> None:
    """MariaDB is down: the grant fails, the gate is held with the targets named, the pod stays
    out of traffic; MariaDB comes back and the retry opens the gate."""
    name = f"{API}-held"
    mariadb.stop_pair(stack.tmp / "mariadb")
    try:
        kubectl.run("apply", "-f", "-", stdin=gated_deployment(name=name, service=API, env=stack.env,
                                                                 namespace=namespace, image=sample_image))

        def held() -> tuple[str, dict[str, dict[str, str]]] | None:
            seen = conditions(kubectl, namespace, name)
            return seen if seen is not None and AUTHORIZED_GATE in seen[1] else None

        _, by_type = wait_for(held, timeout=120, what="the gate held")
        gate = by_type[AUTHORIZED_GATE]
        assert (gate["status"], gate["reason"]) == ("False", "GrantFailing"), gate
        assert f":{REPLICA_PORT}" in gate["message"], gate["message"]
        assert by_type["Ready"]["status"] == "False"
    finally:
        stack.pair = mariadb.start_pair(stack.tmp / "mariadb", master_port=MASTER_PORT,
                                        replica_port=REPLICA_PORT)
    ip, by_type = wait_for(lambda: once(kubectl, namespace, name, "Ready"), timeout=60,
                           what="the gate opened once the replica is back")
    assert ip in stack.accounts(replica=True)
    kubectl.run("delete", "deployment", name, "-n", namespace)


def test_a_gated_pod_of_a_service_without_config_here_is_left_alone(
        stack: Stack, kubectl: Kubectl, namespace: str, sample_image: str) -> None:
    """Not this config center's service (another installation's pod on a shared cluster): no
    condition is written for it, so it stays un-Ready, as Kubernetes keeps a gate nobody owns."""
    name = f"authz-free-{SUFFIX}"
    kubectl.run("apply", "-f", "-", stdin=gated_deployment(name=name, service=name, env=stack.env,
                                                             namespace=namespace, image=sample_image))
    _, by_type = wait_for(lambda: once(kubectl, namespace, name, "ContainersReady"), timeout=120,
                          what="its containers ready")
    time.sleep(3)  # resyncs run every 2 s in this module: give it every chance to decide
    _, by_type = conditions(kubectl, namespace, name) or ("", {})
    assert AUTHORIZED_GATE not in by_type and by_type["Ready"]["status"] == "False"
    kubectl.run("delete", "deployment", name, "-n", namespace)


def test_a_gate_decision_never_lands_on_another_pod_of_the_same_name(real_cluster: Settings, kubectl: Kubectl,
                                                                     namespace: str) -> None:
    """The pod's uid travels in the patch: a successor under the same name refuses it."""
    [pod, *_] = ready_pods(kubectl, namespace, f"app={API}")
    condition = PodCondition(AUTHORIZED_GATE, True, "GrantsInPlace", "for a pod that is gone")

    async def write(uid: str) -> None:
        config = kube_config.load(lifecycle.kubeconfig_path(real_cluster))
        async with KubeClient.from_config(config) as client:
            await set_pod_condition(client, namespace=namespace, pod=pod["metadata"]["name"], uid=uid,
                                    condition=condition)

    with pytest.raises(KubeApiError, match="uid"):
        asyncio.run(write("0f0f0f0f-dead-4bad-8bad-0f0f0f0f0f0f"))
    after = kubectl.get_json("pod", pod["metadata"]["name"], "-n", namespace)
    assert AUTHORIZED_GATE not in {c["type"] for c in after["status"]["conditions"]}
