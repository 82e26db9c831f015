"""Pod Ready -> its MySQL grant usable, and pod deleted -> grant gone, on the real cluster.

`python -m bench.authz_latency`. A MariaDB master + replica of the benchmark's own, a catalog with
an inventory and one service config (a MySQL dependency on both servers), one `bizcloud monitor`
process (the authorization worker runs in it), and a one-replica Deployment of the sample image
whose pod is deleted over and over. Two observers run in this process on one clock:

- a watch on the namespace's pods notes when a pod is first seen with an IP, first seen Ready,
  first seen with a deletionTimestamp, and first seen stopped after it (every container
  terminated, or the pod gone) — the same watch events the monitor reacts to;
- a poller asks both servers every 2 ms which accounts of the service's user exist.

"Grant usable" is the moment the account exists on master *and* replica; "gone" is the moment it
exists on neither. The goal is 200 ms at p50 and p99 for both. Grants follow a pod's address (the
readiness gate ``bizcloud.io/authorized`` holds Ready until they are in place), so "Ready ->
granted" is negative when the gate works, and "IP seen -> granted" is the time a starting pod waits
for its grants. A deleted pod keeps its grants while it drains, until its processes have stopped:
"deleted -> gone" includes that drain, "stopped -> gone" is BizCloud's share. There is no peer process to run
beside it: no other tool grants a database account per pod IP (Vault's database engine issues
credentials, not IP-pinned accounts); the bulk converge is compared with one client per grant in
``bench/authz_mysql.py``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS, summary
from bench.gateway_stack import Observer, sample_namespace
from bizcloud.authz import mariadb
from bizcloud.authz.credentials import KubeCredentials
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.cluster import lifecycle
from bizcloud.cluster.host import node_ip
from bizcloud.cluster.processes import wait_until
from bizcloud.configcenter.schema import SecretRef
from bizcloud.configcenter.store import ConfigStore
from bizcloud.kube import config as kube_config
from bizcloud.kube.client import KubeClient
from bizcloud.kube.kubectl import is_ready
from bizcloud.settings import Settings

MASTER_PORT, REPLICA_PORT = 33236, 33237
METRICS_PORT = 18814
GOAL_S = 0.200
SERVICE, USER = "azbench-api", "azbench"


class PodWatch(Observer):
    """Wall-clock times at which the watch first showed each pod IP, Ready, being deleted, stopped."""

    def __init__(self, settings: Settings, namespace: str) -> None:
        super().__init__()
        self.settings, self.namespace = settings, namespace
        self.addressed: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.deleting: dict[str, float] = {}
        self.stopped: dict[str, float] = {}

    def _run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        config = kube_config.load(lifecycle.kubeconfig_path(self.settings))
        async with KubeClient.from_config(config) as client:
            while not self.stop.is_set():
                async for event in client.stream_watch(f"/api/v1/namespaces/{self.namespace}/pods",
                                                       {"timeoutSeconds": "5"}, read_timeout=10):
                    now, pod = time.time(), event["object"]
                    ip = pod.get("status", {}).get("podIP")
                    if not ip:
                        continue
                    if pod["metadata"].get("deletionTimestamp"):
                        self.deleting.setdefault(ip, now)
                        if event.get("type") == "DELETED" or _stopped(pod):
                            self.stopped.setdefault(ip, now)
                        continue
                    self.addressed.setdefault(ip, now)
                    if is_ready(pod):
                        self.ready.setdefault(ip, now)


def _stopped(pod: dict[str, Any]) -> bool:
    """No process runs in the pod any more (what the monitor waits for before revoking)."""
    status = pod.get("status", {})
    containers = status.get("containerStatuses") or []
    return status.get("phase") in {"Succeeded", "Failed"} or (
        bool(containers) and all("terminated" in (c.get("state") or {}) for c in containers))


class AccountPoll(Observer):
    """Wall-clock times at which each IP's account first existed on both servers, and on neither."""

    def __init__(self, pair: mariadb.MariaDbPair) -> None:
        super().__init__()
        self.pair = pair
        self.granted: dict[str, float] = {}
        self.gone: dict[str, float] = {}

    def _run(self) -> None:
        master, replica = mariadb.connect(self.pair), mariadb.connect(self.pair, replica=True)
        try:
            while not self.stop.is_set():
                held = [self._hosts(conn) for conn in (master, replica)]
                now = time.time()
                for ip in held[0] & held[1]:
                    self.granted.setdefault(ip, now)
                for ip in set(self.granted) - held[0] - held[1]:
                    self.gone.setdefault(ip, now)
                time.sleep(0.002)
        finally:
            master.close()
            replica.close()

    @staticmethod
    def _hosts(conn: Any) -> set[str]:
        with conn.cursor() as cursor:
            cursor.execute("SELECT Host FROM mysql.user WHERE User = %s", (USER,))
            return {str(row[0]) for row in cursor.fetchall()}


def _deployment(namespace: str, image: str) -> str:
    from tests.e2e.conftest import demo_deployment  # noqa: PLC0415 - the e2e tests' sample Deployment

    doc = json.loads(demo_deployment(name=SERVICE, namespace=namespace, image=image, replicas=1))
    for labels in (doc["metadata"]["labels"], doc["spec"]["template"]["metadata"]["labels"]):
        labels["bizcloud.io/env"] = namespace.removeprefix("bc-")  # the convention: namespace bc-<env>
    return json.dumps(doc)


def _wait_ip(check: Callable[[], str | None], *, what: str, timeout: float, log: Path) -> str:
    found = wait_until(check, what=what, timeout=timeout, log=log, interval=0.05)
    assert found is not None
    return found


def _gone(watch: PodWatch, poll: AccountPoll, ip: str) -> bool:
    return ip in poll.gone and ip in watch.deleting


def _replacement(watch: PodWatch, poll: AccountPoll, old: str) -> str | None:
    """The new pod's IP once it is Ready and granted (None before)."""
    return next((ip for ip in poll.granted if ip != old and ip not in poll.gone and ip in watch.ready), None)


async def _store_admin(settings: Settings, ref: SecretRef, pair: mariadb.MariaDbPair) -> None:
    async with KubeClient.from_config(kube_config.load(lifecycle.kubeconfig_path(settings))) as client:
        await KubeCredentials(client).store_admin(ref, pair.admin_user, pair.admin_password)


def run(*, cycles: int = 20, log: Any = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bizauthz-") as tmp, sample_namespace() as ns:
        scratch = Path(tmp)
        env_name = ns.name.removeprefix("bc-")
        pair = mariadb.start_pair(scratch / "mariadb", master_port=MASTER_PORT, replica_port=REPLICA_PORT)
        monitor: subprocess.Popen[bytes] | None = None
        observers: list[Observer] = []
        try:
            admin = SecretRef(namespace=ns.name, name="mariadb-admin")
            asyncio.run(_store_admin(ns.cluster, admin, pair))
            db_url = f"sqlite:///{scratch / 'catalog.db'}"
            engine = make_engine(db_url)
            migrate_engine(engine)
            host = node_ip()
            ConfigStore(engine).apply(yaml.safe_dump_all([
                {"kind": "Inventory", "mysql": {"bench": {
                    "master": {"host": host, "port": MASTER_PORT},
                    "slaves": [{"host": host, "port": REPLICA_PORT}],
                    "admin": {"namespace": admin.namespace, "name": admin.name}}}},
                {"kind": "Service", "name": SERVICE, "dependencies": {"mysql": [
                    {"cluster": "bench", "database": "mysql", "user": USER, "privileges": ["SELECT"],
                     "roles": ["master", "slaves"]}]}}]), author="bench")
            engine.dispose()
            env = {**os.environ, "BIZCLOUD_DATABASE_URL": db_url,
                   "BIZCLOUD_MONITOR_METRICS_PORT": str(METRICS_PORT),
                   "BIZCLOUD_MONITOR_LEASE_NAME": f"bench-authz-{uuid.uuid4().hex[:6]}",
                   "BIZCLOUD_MONITOR_GRACE_S": "1", "BIZCLOUD_ZOOKEEPER_HOSTS": ""}
            with (scratch / "monitor.log").open("wb") as out:
                monitor = subprocess.Popen([sys.executable, "-m", "bizcloud", "monitor"], env=env, stdout=out,
                                           stderr=subprocess.STDOUT)
            watch, poll = PodWatch(ns.cluster, ns.name), AccountPoll(pair)
            observers = [watch, poll]
            for observer in observers:
                observer.start()
            ns.kubectl.apply(_deployment(ns.name, ns.image))
            log(f"  {cycles} pod replacements in {ns.name} (env {env_name})")
            granted_s: list[float] = []
            addressed_s: list[float] = []
            gone_s: list[float] = []
            stopped_s: list[float] = []
            monitor_log = scratch / "monitor.log"
            current = _wait_ip(lambda: next(iter(set(poll.granted) - set(poll.gone)), None),
                               what="the first pod granted", timeout=180, log=monitor_log)
            for _ in range(cycles):
                pods = ns.kubectl.get_json("pods", "-n", ns.name, "-l", f"app={SERVICE}")["items"]
                [pod] = [p for p in pods if p["status"].get("podIP") == current]
                ns.kubectl.run("delete", "pod", "-n", ns.name, pod["metadata"]["name"], "--wait=false")
                old = current
                current = _wait_ip(functools.partial(_replacement, watch, poll, old),
                                   what="the replacement pod granted", timeout=120, log=monitor_log)
                wait_until(functools.partial(_gone, watch, poll, old), timeout=30,
                           what="the deleted pod's account gone", log=monitor_log)
                granted_s.append(poll.granted[current] - watch.ready[current])
                addressed_s.append(poll.granted[current] - watch.addressed[current])
                gone_s.append(poll.gone[old] - watch.deleting[old])
                if old in watch.stopped:  # the watch may restart across the pod's last event
                    stopped_s.append(poll.gone[old] - watch.stopped[old])
            result = {"cycles": cycles, "ready_to_granted_s": summary(granted_s),
                      "addressed_to_granted_s": summary(addressed_s),
                      "deleted_to_gone_s": summary(gone_s), "stopped_to_gone_s": summary(stopped_s),
                      "goal_s": GOAL_S}
        finally:
            for observer in observers:
                observer.stop.set()
            if monitor is not None:
                monitor.send_signal(signal.SIGTERM)
                monitor.wait(timeout=20)
            mariadb.stop_pair(scratch / "mariadb")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "authz_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(console: Console, result: dict[str, Any]) -> None:
    table = Table("path", "p50", "p99", "max", "goal", title=f"Grants follow pods ({result['cycles']} pods)")
    for label, key in (("pod IP seen -> account on master and replica", "addressed_to_granted_s"),
                       ("pod Ready -> account on master and replica", "ready_to_granted_s"),
                       ("pod deleted -> account gone on both (its drain included)", "deleted_to_gone_s"),
                       ("pod stopped -> account gone on both", "stopped_to_gone_s")):
        s = result[key]
        table.add_row(label, *(f"{s[k] * 1000:.0f} ms" for k in ("p50", "p99", "max")),
                      f"{result['goal_s'] * 1000:.0f} ms")
    console.print(table)


if __name__ == "__main__":
    print_table(Console(), run())
