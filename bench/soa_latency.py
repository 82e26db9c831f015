"""DOWN -> consumer stops using the provider: BizCloud's registry beside Dubbo's own mechanism.

`python -m bench.soa_latency`. One real ZooKeeper (Debian's, on a port of its own), a consumer
of the SDK on its own session, and two ways a provider leaves:

- **BizCloud**: the monitor's DOWN reaches ``SoaRegistry.handle``, which deletes the persistent
  node; we time from that call to the consumer's watch callback no longer listing the provider.
  (From ``kubectl delete`` on the real cluster, the e2e test prints the whole path: ~0.1 s.)
- **Dubbo's way** (the peer): the provider holds an *ephemeral* node on its own ZooKeeper
  session, as a Dubbo provider does; it is killed with SIGKILL, as in the zombie reports, and
  the node goes only when ZooKeeper expires the session. We time from the kill to the same
  watch callback, with the shortest session this server allows (2 x tickTime = 4 s; Dubbo's
  default is 60 s), so the peer's figure is its best case.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from bench.common import percentile, summary
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid
from bizcloud.soa import zookeeper
from bizcloud.soa.consumer import Consumer
from bizcloud.soa.plan import providers_of
from bizcloud.soa.registry import SoaRegistry
from bizcloud.soa.urls import Provider
from bizcloud.soa.zookeeper import ZooKeeperServer

PORT = 22189
GOAL_P99_S = 0.100
INTERFACE = "com.example.bench.DemoApi"

# The peer provider: register an ephemeral node the way Dubbo does, then wait to be killed.
_EPHEMERAL_PROVIDER = """
import sys, time
from kazoo.client import KazooClient
client = KazooClient(hosts=sys.argv[1], timeout=4.0)
client.start(timeout=15)
client.create(sys.argv[2], b"", ephemeral=True, makepath=True)
print("registered", flush=True)
time.sleep(3600)
"""


class Watcher:
    """Times when a provider address leaves the consumer's list (in the watch callback)."""

    def __init__(self) -> None:
        self.address: str | None = None
        self.gone = threading.Event()
        self.gone_at = 0.0

    def expect(self, address: str) -> None:
        self.address, self.gone_at = address, 0.0
        self.gone.clear()

    def __call__(self, providers: list[Provider]) -> None:
        listed = {p.address for p in providers}
        if self.address is not None and self.address not in listed and not self.gone.is_set():
            self.gone_at = time.monotonic()
            self.gone.set()


def _instance(i: int) -> Instance:
    return Instance(service="bench-api", env="bench", group=Group.NORMAL, namespace="bc-bench",
                    pod=f"bench-api-{i}", uid=PodUid(uuid.uuid4().hex), ip=f"10.77.{i // 250}.{i % 250 + 1}",
                    ports={"soa": 8080}, ready=True, soa_interfaces=INTERFACE)


async def _bizcloud(server: ZooKeeperServer, watcher: Watcher, consumer: Consumer,
                    rounds: int) -> list[float]:
    client = KazooClient(hosts=server.hosts)
    client.start(timeout=15)
    live: dict[str, Instance] = {}
    registry = SoaRegistry(client, live=lambda: list(live.values()))
    background = [_instance(1000 + i) for i in range(20)]  # other providers stay registered
    for instance in background:
        live[instance.uid] = instance
    await registry.reconcile()
    latencies = []
    try:
        for i in range(rounds):
            instance = _instance(i)
            live[instance.uid] = instance
            await registry.handle(InstanceEvent(type=EventType.UP, instance=instance))
            address = f"{instance.ip}:8080"
            while address not in {p.address for p in consumer.providers()}:
                await asyncio.sleep(0.001)
            watcher.expect(address)
            live.pop(instance.uid)
            started = time.monotonic()
            await registry.handle(InstanceEvent(type=EventType.DOWN, instance=instance))
            await asyncio.to_thread(watcher.gone.wait, 10)
            latencies.append(watcher.gone_at - started)
    finally:
        client.stop()
        client.close()
    return latencies


def _ephemeral(server: ZooKeeperServer, watcher: Watcher, rounds: int) -> list[float]:
    latencies = []
    for i in range(rounds):
        provider = providers_of(_instance(500 + i))[0]
        proc = subprocess.Popen([sys.executable, "-c", _EPHEMERAL_PROVIDER, server.hosts, provider.path],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
        time.sleep(0.3)  # let the consumer list it
        watcher.expect(provider.address)
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        watcher.gone.wait(90)
        latencies.append(watcher.gone_at - started)
    return latencies


def run(*, rounds: int = 200, peer_rounds: int = 5, log: Any = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bizbench-zk-") as scratch:
        server = ZooKeeperServer(root=Path(scratch), port=PORT)
        zookeeper.start(server)
        watcher = Watcher()
        try:
            with Consumer(server.hosts, INTERFACE, on_change=watcher) as consumer:
                log(f"  BizCloud registry DOWN -> consumer, {rounds} rounds…")
                ours = asyncio.run(_bizcloud(server, watcher, consumer, rounds))
                log(f"  ephemeral node + kill -9 (Dubbo's way), {peer_rounds} rounds…")
                peer = _ephemeral(server, watcher, peer_rounds)
        finally:
            zookeeper.stop(server)
    return {"bizcloud": summary(ours), "ephemeral_kill9": summary(peer),
            "goal_p99_s": GOAL_P99_S, "p99_vs_goal": percentile(ours, 99) / GOAL_P99_S,
            "peer_p99_over_ours": percentile(peer, 99) / percentile(ours, 99)}


def print_table(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415 - only when printing

    table = Table("DOWN -> consumer stops using it", "p50", "p99", "max", title="SOA registry")
    for label, key in (("BizCloud (registry DOWN)", "bizcloud"),
                       ("ephemeral node, kill -9", "ephemeral_kill9")):
        s = r[key]
        table.add_row(label, *(f"{s[k] * 1000:.1f} ms" for k in ("p50", "p99", "max")))
    table.add_row("BizCloud p99 / 100 ms goal (below 1 meets it)", "", f"{r['p99_vs_goal']:.2f}", "")
    table.add_row("peer p99 / BizCloud p99", "", f"{r['peer_p99_over_ours']:.0f}x", "")
    console.print(table)


if __name__ == "__main__":
    import json

    from rich.console import Console

    result = run()
    print(json.dumps(result, indent=2))
    print_table(Console(), result)
