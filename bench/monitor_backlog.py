"""The monitor's backlog path in one process, without a cluster: for profiling and side-by-side cuts.

``bench.monitor_throughput`` times the shipped monitor against kwok pods (about 10 minutes, and
the apiserver, kopf and the bare loop share the 2 cores). This harness isolates what is ours: N
pod JSONs shaped like the bench's go through the informer's handler (``Monitor.on_sync``), the
dispatcher, the catalog subscriber (bulk writes, change rows, the journal) on a fresh SQLite file,
and the authorization worker's batches and kicks (no grant targets: it plans, finds nothing to
do), exactly as ``bizcloud monitor`` wires them. Time: handler start -> everything delivered and
journaled.

    .venv/bin/python -m bench.monitor_backlog --pods 10000 [--profile out.prof] [--rounds 3]
        [--switch-interval-ms 1 5]   # A/B of the GIL switch interval, rounds alternating
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bizcloud.authz.journal import AuthzStore
from bizcloud.authz.worker import AuthzWorker
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.catalog.subscriber import CatalogSubscriber
from bizcloud.configcenter.store import ConfigStore
from bizcloud.kube.informer import gc_paused
from bizcloud.monitor.dispatcher import Dispatcher
from bizcloud.monitor.monitor import Monitor


def pods(n: int) -> list[dict[str, Any]]:
    """N serving pods as the apiserver lists them in the kwok bench (same labels and ports)."""
    return [{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"bench-monitor-{i:05d}", "namespace": "bench-monitor", "uid": f"uid-{i:05d}",
                     "resourceVersion": str(1000 + i),
                     "labels": {"app": "bench-monitor", "bizcloud.io/service": "bench-svc",
                                "bizcloud.io/env": "bench", "pod-template-hash": "5d8f7c"}},
        "spec": {"nodeName": f"kwok-node-{i // 110}", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "fake.local/bench:1",
                                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                   "conditions": [{"type": "Initialized", "status": "True"},
                                  {"type": "Ready", "status": "True"},
                                  {"type": "ContainersReady", "status": "True"},
                                  {"type": "PodScheduled", "status": "True"}],
                   "containerStatuses": [{"name": "app", "ready": True, "state": {"running": {}}}]},
    } for i in range(n)]


async def backlog(objects: list[dict[str, Any]], db: Path) -> tuple[float, float]:
    """Seconds from the first listed pod handed to the monitor until every event is committed, and
    this process's CPU seconds in that time (steadier than the former on a shared machine)."""
    engine = make_engine(f"sqlite:///{db}")
    migrate_engine(engine)
    catalog = CatalogSubscriber(CatalogStore(engine))
    monitor: Monitor
    authz = AuthzWorker(configs=ConfigStore(engine), store=AuthzStore(engine), executors={},
                        live=lambda: monitor.addressed())  # noqa: PLW0108 - monitor is made below
    dispatcher = Dispatcher([catalog, authz], journal=catalog)
    monitor = Monitor(dispatcher, catalog, on_addresses=authz.kick)
    await monitor.start_leading()
    started, cpu = time.perf_counter(), time.process_time()
    with gc_paused():
        await monitor.on_sync(objects, "1")
    await dispatcher.drain(timeout=600)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    rows = len(await catalog.instances())
    assert rows == len(objects), f"{rows} rows committed, expected {len(objects)}"
    await dispatcher.stop()
    engine.dispose()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of one round here")
    parser.add_argument("--switch-interval-ms", type=float, nargs="+", metavar="MS",
                        help="sys.setswitchinterval for the rounds (`bizcloud monitor` sets 1 ms); several "
                             "values alternate round by round and are reported apart")
    args = parser.parse_args()
    objects = pods(args.pods)
    if args.switch_interval_ms:
        by_interval: dict[float, tuple[list[float], list[float]]] = {
            ms: ([], []) for ms in args.switch_interval_ms}
        with tempfile.TemporaryDirectory(prefix="bc-backlog-") as scratch:
            asyncio.run(backlog(objects, Path(scratch) / "warm-up.db"))  # first-use imports and caches
            for n in range(args.rounds):
                for ms, (walls, cpu_times) in by_interval.items():
                    sys.setswitchinterval(ms / 1000)
                    elapsed, cpu = asyncio.run(backlog(objects, Path(scratch) / f"catalog-{n}-{ms}.db"))
                    walls.append(elapsed)
                    cpu_times.append(cpu)
        print(json.dumps({"pods": args.pods, "by_switch_interval_ms": {
            str(ms): {"seconds": [round(t, 3) for t in walls], "median_s": round(statistics.median(walls), 3),
                      "cpu_s": [round(c, 3) for c in cpu_times],
                      "median_cpu_s": round(statistics.median(cpu_times), 3)}
            for ms, (walls, cpu_times) in by_interval.items()}}))
        return
    times: list[float] = []
    cpus: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bc-backlog-") as scratch:
        for n in range(args.rounds):
            db = Path(scratch) / f"catalog-{n}.db"
            if args.profile is not None and n == 0:
                profiler = cProfile.Profile()
                profiler.enable()
                elapsed, cpu = asyncio.run(backlog(objects, db))
                profiler.disable()
                profiler.dump_stats(args.profile)
            else:
                elapsed, cpu = asyncio.run(backlog(objects, db))
            times.append(elapsed)
            cpus.append(cpu)
    print(json.dumps({"pods": args.pods, "seconds": [round(t, 3) for t in times],
                      "median_s": round(statistics.median(times), 3),
                      "cpu_s": [round(c, 3) for c in cpus], "median_cpu_s": round(statistics.median(cpus), 3),
                      "pods_per_s": round(args.pods / statistics.median(times))}))


if __name__ == "__main__":
    main()
