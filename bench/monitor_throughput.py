"""The k8s-monitor benchmark: BizCloud's monitor beside a kopf peer and a bare watch loop, 10k kwok pods.

Issue 3 asks for the monitor to move pod changes into committed catalog rows at >= 5x a kopf
operator doing the same work, >= 0.5x a loop that only decodes the watch, and to relist and
reconcile 10k pods in <= 2 s (the cost of every 410 Gone). The three consumers run as separate
processes on one isolated kwok cluster, so each one's RSS is its own:

- ``bizcloud``: ``python -m bizcloud monitor`` (Reflector -> Monitor -> Dispatcher ->
  CatalogSubscriber on a fresh SQLite file) exactly as it ships; done = rows in its catalog;
- ``kopf``: ``bench/kopf_peer.py`` (same pure rules, same ``CatalogStore.apply_event``); done = rows;
- ``bare``: ``bench/bare_watch.py`` (decode and count); done = the count it reports.

Phases, all on the same pods (one sentinel pod first proves every consumer is watching):
1. live: the three run while a Deployment of N replicas is created; the cluster produces the
   stream (controller-manager at 300 qps, scheduler, kwok), so this shows who keeps up, and how far behind;
2. backlog: N serving pods exist; each consumer starts alone with an empty catalog, then all three
   at once; time from process start to N committed — consumer-bound, this is the throughput ratio;
3. relist+reconcile, in this process: a Reflector+Monitor over a copy of the full catalog lists
   once (cold takeover), then is made to list again as after a 410; timed until its reconcile returns;
4. down burst: with the three running, one DeleteCollection marks every pod as deleting in
   a burst; time until each consumer has withdrawn all N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import bench_settings
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.catalog.subscriber import CatalogSubscriber
from bizcloud.cluster import lifecycle
from bizcloud.kube import config as kube_config
from bizcloud.kube.client import KubeClient, Objs
from bizcloud.kube.informer import Reflector
from bizcloud.monitor.dispatcher import Dispatcher
from bizcloud.monitor.instances import slim_pod
from bizcloud.monitor.monitor import Monitor
from bizcloud.monitor.podlines import slim_event
from bizcloud.settings import Settings

NAMESPACE = "bench-monitor"
APP = "bench-monitor"
PODS_PER_NODE = 110
BENCH_DIR = Path(__file__).resolve().parent
CONSUMERS = ("bizcloud", "kopf", "bare")
GOALS = {"vs_kopf": 5.0, "vs_bare": 0.5, "relist_s": 2.0}


# --- the pods ------------------------------------------------------------------------------------

def _pod_template(name: str | None = None) -> dict[str, Any]:
    labels = {"app": APP if name is None else name, "bizcloud.io/service": "bench-svc",
              "bizcloud.io/env": "bench"}
    return {
        "metadata": {"labels": labels, **({"name": name} if name else {})},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "fake.local/bench:1",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }


def _deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": APP}},
                     "template": _pod_template()}}


@contextlib.contextmanager
def _api(settings: Settings, timeout: float = 600.0) -> Iterator[httpx.Client]:
    with lifecycle.admin_http(settings) as client:
        client.timeout = httpx.Timeout(timeout)
        yield client


def _prepare_namespace(settings: Settings) -> None:
    with _api(settings) as api:
        api.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": NAMESPACE}})
        deadline = time.monotonic() + 60
        while api.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("no default ServiceAccount in the bench namespace")
            time.sleep(0.2)
        sentinel = {"apiVersion": "v1", "kind": "Pod", **_pod_template("sentinel")}
        api.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=sentinel).raise_for_status()


# --- the consumers -------------------------------------------------------------------------------

@dataclass
class Consumer:
    """One consumer process and how to ask it how many serving instances it has committed."""

    name: str
    proc: subprocess.Popen[str]
    started_at: float
    db: Path | None = None
    reports: list[dict[str, float]] = field(default_factory=list)

    def committed(self) -> tuple[int, float | None]:
        """(instances committed, unix time of the newest commit) — for bare, its newest report."""
        if self.db is None:
            if not self.reports:
                return 0, None
            last = self.reports[-1]
            return int(last["serving"]), last["at"]
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as db:
                count = db.execute("SELECT count(*) FROM instances").fetchone()[0]
                newest = db.execute("SELECT max(at) FROM changes").fetchone()[0]
        except sqlite3.OperationalError:  # not created or not migrated yet
            return 0, None
        at = datetime.fromisoformat(newest).replace(tzinfo=UTC).timestamp() if newest else None
        return int(count), at

    def memory(self) -> dict[str, float]:
        """VmHWM (peak) and VmRSS in MiB, from /proc."""
        figures: dict[str, float] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    figures[key] = int(value.split()[0]) / 1024
        return figures

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far, from /proc: on a shared machine
        it moves less with other work than wall time does."""
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _consumer_env(scratch: Path) -> dict[str, str]:
    """The consumers' environment: unbuffered, and bytecode cached in the scratch directory.

    An installed package runs from compiled bytecode; a developer's shell may forbid writing it
    (``PYTHONDONTWRITEBYTECODE``), and then every start compiles each module again (0.4 s of
    the monitor's start-up). All three consumers get the same cache, warmed by ``_warm_bytecode``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _warm_bytecode(scratch: Path) -> None:
    """Import what each consumer imports once, so every timed start reads cached bytecode."""
    code = "import bizcloud.cli, bizcloud.daemons, bench.bare_watch, kopf, bench.kopf_peer"
    subprocess.run([sys.executable, "-c", code], env=_consumer_env(scratch), cwd=BENCH_DIR.parent, check=True)


def _start(name: str, settings: Settings, scratch: Path, tag: str, report_at: list[int]) -> Consumer:
    kubeconfig = str(lifecycle.kubeconfig_path(settings))
    log = (scratch / f"{name}-{tag}.log").open("w")
    env = _consumer_env(scratch)
    db: Path | None = None
    if name == "bizcloud":
        db = scratch / f"bizcloud-{tag}.db"
        env.update(BIZCLOUD_DATABASE_URL=f"sqlite:///{db}", BIZCLOUD_KUBECONFIG=kubeconfig,
                   BIZCLOUD_MONITOR_METRICS_PORT=str(_free_port()),
                   BIZCLOUD_MONITOR_LEASE_NAME=f"bench-{tag}", BIZCLOUD_STATE_DIR=str(settings.state_dir))
        argv = [sys.executable, "-m", "bizcloud", "monitor"]
    elif name == "kopf":
        db = scratch / f"kopf-{tag}.db"
        env.update(KUBECONFIG=kubeconfig, BENCH_KOPF_DB=str(db))
        argv = [str(Path(sys.executable).parent / "kopf"), "run", "--standalone", "--all-namespaces",
                "--quiet", str(BENCH_DIR / "kopf_peer.py")]
    else:
        argv = [sys.executable, "-m", "bench.bare_watch", "--kubeconfig", kubeconfig,
                *[a for n in report_at for a in ("--report-at", str(n))]]
    started = time.time()
    proc = subprocess.Popen(argv, env=env, cwd=BENCH_DIR.parent, text=True, stderr=log,
                            stdout=subprocess.PIPE if name == "bare" else log)
    consumer = Consumer(name=name, proc=proc, started_at=started, db=db)
    if name == "bare":
        threading.Thread(target=_read_reports, args=(consumer,), daemon=True).start()
    return consumer


def _read_reports(consumer: Consumer) -> None:
    assert consumer.proc.stdout is not None
    for line in consumer.proc.stdout:
        report = json.loads(line)
        if "serving" in report:
            consumer.reports.append(report)


def _wait(consumers: list[Consumer], target: int, *, since: float, timeout: float,
          on_poll: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Seconds from ``since`` until each consumer has exactly ``target`` serving instances committed."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(consumers):
        for c in consumers:
            if c.name in done:
                continue
            if c.proc.poll() is not None:
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode}; see its log")
            count, at = c.committed()
            if count == target and at is not None and at >= since:
                done[c.name] = at - since
        on_poll()
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f}s: {[(c.name, c.committed()[0]) for c in consumers]}"
                               f" of {target}")
        time.sleep(0.05)
    return done


# --- relist + reconcile, in this process ---------------------------------------------------------

class _TimedHandler:
    """Passes the reflector's calls to the monitor and notes when each on_sync has returned."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.sync_started: list[float] = []
        self.sync_done: list[float] = []
        self.synced = asyncio.Event()

    async def on_list_chunk(self, objects: Objs, offset: int) -> None:
        await self.monitor.on_list_chunk(objects, offset)

    async def on_sync(self, objects: Objs, resource_version: str) -> None:
        self.sync_started.append(time.perf_counter())
        await self.monitor.on_sync(objects, resource_version)
        await self.monitor.settled()   # the reconciliation after the list
        self.sync_done.append(time.perf_counter())
        self.synced.set()

    async def on_event(self, type: str, obj: dict[str, Any]) -> None:
        await self.monitor.on_event(type, obj)


async def _relist(settings: Settings, catalog_db: Path) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{catalog_db}")
    await asyncio.to_thread(migrate_engine, engine)
    catalog = CatalogSubscriber(CatalogStore(engine))
    dispatcher = Dispatcher([catalog], journal=catalog)
    monitor = Monitor(dispatcher, catalog, grace=settings.monitor_grace_s)
    handler = _TimedHandler(monitor)
    config = kube_config.load(lifecycle.kubeconfig_path(settings))
    result: dict[str, Any] = {}
    async with KubeClient.from_config(config) as client:
        reflector = Reflector(client, handler, transform=slim_pod, decode=slim_event)  # as `bizcloud monitor`
        await monitor.start_leading()  # nothing to replay yet: takeover happens in the first on_sync

        async def one_list() -> float:
            handler.synced.clear()
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(reflector.run(stop))
            await handler.synced.wait()
            stop.set()
            await task
            return started

        # Cold: a fresh monitor (empty table) over the full catalog, as when a new leader takes over.
        started = await one_list()
        await dispatcher.drain()
        repairs = await monitor.reconcile()
        result["cold_takeover_s"] = time.perf_counter() - started
        result["cold_list_s"] = handler.sync_started[-1] - started
        result["cold_repairs"] = repairs.added + repairs.removed
        # Warm: the same monitor lists again, as the reflector does after a 410 Gone.
        reflector.last_resource_version = ""
        started = await one_list()
        result["relist_reconcile_s"] = handler.sync_done[-1] - started
        result["relist_list_s"] = handler.sync_started[-1] - started
        result["relist_sync_reconcile_s"] = handler.sync_done[-1] - handler.sync_started[-1]
        result["relist_queued"] = dispatcher.depth("catalog")
        await dispatcher.drain()
        repairs = await monitor.reconcile()
        result["relist_repairs"] = repairs.added + repairs.removed
        t0 = time.perf_counter()
        await catalog.instances()
        result["catalog_read_s"] = time.perf_counter() - t0
    engine.dispose()
    return result


def _delete_all_pods(settings: Settings) -> None:
    """DeleteCollection until no bench pod is left: the API server cuts one call off at its 60 s
    request timeout (about 6,000 pods on 2 cores), leaving the rest."""
    with _api(settings, timeout=90) as api:
        path, selector = f"/api/v1/namespaces/{NAMESPACE}/pods", {"labelSelector": f"app={APP}"}
        while api.get(path, params={**selector, "limit": "1"}).json()["items"]:
            with contextlib.suppress(httpx.HTTPError):
                api.delete(path, params=selector)


def _copy_db(source: Path, target: Path) -> None:
    with contextlib.closing(sqlite3.connect(source)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


# --- the run -------------------------------------------------------------------------------------

def run(settings: Settings, *, pods: int = 10000, rounds: int = 3,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring up a kwok cluster for ``pods`` pods, run the four phases, tear the cluster down.

    ``settings`` must name a cluster that is not running (``bench_settings`` of a fresh state dir).
    """
    nodes = max(10, math.ceil(pods * 1.05 / PODS_PER_NODE))
    target = pods + 1  # the sentinel
    results: dict[str, Any] = {"pods": pods, "kwok_nodes": nodes}
    with tempfile.TemporaryDirectory(prefix="bizbench-monitor-") as tmp:
        scratch = Path(tmp)
        running: list[Consumer] = []
        try:
            log(f"kwok cluster with {nodes} nodes…")
            lifecycle.up(settings, mode="kwok", kwok_nodes=nodes)
            _prepare_namespace(settings)
            _warm_bytecode(scratch)

            def start_all(tag: str) -> list[Consumer]:
                group = [_start(n, settings, scratch, tag, [1, target]) for n in CONSUMERS]
                running.extend(group)
                return group

            def stop(group: list[Consumer]) -> None:
                for c in group:
                    c.stop()
                    running.remove(c)

            # 1. live
            log("live: three consumers, then a Deployment of N replicas…")
            live = start_all("live")
            startup = _wait(live, 1, since=min(c.started_at for c in live), timeout=120)
            results["startup_s"] = {c.name: startup[c.name] - (c.started_at - min(x.started_at for x in live))
                                    for c in live}
            t0 = time.time()
            with _api(settings) as api:
                api.post(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                         json=_deployment(pods)).raise_for_status()
            live_done = _wait(live, target, since=t0, timeout=max(300, pods / 10))
            bare_events = [r for r in live[2].reports if r["serving"] == target][-1]["events"]
            results["live"] = {"done_s": live_done, "stream_events": bare_events,
                               "memory_mib": {c.name: c.memory() for c in live}}
            stop(live)

            # 2. backlog, each alone (BizCloud and the bare loop ``rounds`` times, interleaved: one
            #    run of either swings by a third with the API server's pace), then all together
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONSUMERS}
            for n in range(rounds):
                for name in CONSUMERS if n == 0 else ("bizcloud", "bare"):
                    log(f"backlog: {name} alone, round {n + 1}/{rounds}…")
                    (alone,) = group = [_start(name, settings, scratch, f"alone{n}", [1, target])]
                    running.extend(group)
                    runs[name].append({"done_s": _wait(group, target, since=alone.started_at,
                                                       timeout=max(300, pods / 5))[name],
                                       "memory_mib": alone.memory(), "cpu_s": alone.cpu_seconds()})
                    stop(group)
            results["backlog_alone"] = {name: _median_run(r) for name, r in runs.items()}
            log("backlog: all three together…")
            together = start_all("together")
            since = min(c.started_at for c in together)
            done = _wait(together, target, since=since, timeout=max(300, pods / 5))
            results["backlog_together"] = {
                name: {"done_s": done[c.name] - (c.started_at - since), "memory_mib": c.memory()}
                for c in together for name in [c.name]}

            # 3. relist + reconcile on a copy of the full catalog (the consumers stay, idle)
            log("relist + reconcile…")
            copy = scratch / "relist.db"
            assert together[0].db is not None
            _copy_db(together[0].db, copy)
            results["relist"] = asyncio.run(_relist(settings, copy))

            # 4. down burst: orphan the pods, then delete them all in one call
            log("down burst: one DeleteCollection of all N pods…")
            with _api(settings) as api:
                orphan = {"propagationPolicy": "Orphan"}
                api.request("DELETE", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{APP}",
                            json=orphan).raise_for_status()
                api.request("DELETE", f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets",
                            params={"labelSelector": f"app={APP}"}, json=orphan).raise_for_status()
                # The garbage collector now strips the owner from every pod (N patches at 300 qps, no
                # instance changes): let it finish so the burst below is the only thing on the stream.
                deadline = time.monotonic() + max(300, pods / 10)
                while api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets").json()["items"]:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the ReplicaSet was not orphaned and deleted in time")
                    time.sleep(1)
                time.sleep(5)
                t0 = time.time()
                deleter = threading.Thread(target=_delete_all_pods, args=(settings,))
                deleter.start()
                down_done = _wait(together, 1, since=t0, timeout=max(300, pods / 5))
                deleter.join()
            results["down_burst"] = {"done_s": down_done,
                                     "memory_mib": {c.name: c.memory() for c in together}}
            stop(together)
        finally:
            for c in list(running):
                c.stop()
            lifecycle.down(settings, purge=True)
    return _with_ratios(results)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' median time and CPU, the peak memory, and every run's time. Purely computational."""
    cpus = [r["cpu_s"] for r in runs if r["cpu_s"] is not None]
    return {"done_s": statistics.median(r["done_s"] for r in runs),
            "cpu_s": statistics.median(cpus) if cpus else None,
            "memory_mib": max((r["memory_mib"] for r in runs), key=lambda m: m.get("VmHWM", 0)),
            "runs_s": [round(r["done_s"], 3) for r in runs], "cpu_runs_s": cpus}


def _with_ratios(r: dict[str, Any]) -> dict[str, Any]:
    """Rates (pods or events per second) and our ratios to the peer and the limit. Purely computational."""
    pods = r["pods"]
    ratios: dict[str, dict[str, float]] = {}
    for phase, per_pod in (("live", False), ("backlog_alone", True), ("backlog_together", True),
                           ("down_burst", True)):
        times = r[phase]["done_s"] if "done_s" in r[phase] else {n: r[phase][n]["done_s"] for n in CONSUMERS}
        work = pods if per_pod else r[phase]["stream_events"]
        r[phase]["rate_per_s"] = {n: work / t for n, t in times.items()}
        ratios[phase] = {"vs_kopf": times["kopf"] / times["bizcloud"],
                         "vs_bare": times["bare"] / times["bizcloud"]}
    r["ratios"] = ratios
    return r


def print_table(console: Console, r: dict[str, Any]) -> None:
    table = Table("measure", "bizcloud", "kopf", "bare loop", "ours/kopf", "ours/bare",
                  title=f"k8s-monitor, {r['pods']} kwok pods (goals: >= 5x kopf, >= 0.5x bare)")

    def row(label: str, phase: str, unit: str) -> None:
        p = r[phase]
        times = p["done_s"] if "done_s" in p else {n: p[n]["done_s"] for n in CONSUMERS}
        cells = [f"{times[n]:.1f} s ({p['rate_per_s'][n]:,.0f} {unit}/s)" for n in CONSUMERS]
        ratio = r["ratios"][phase]
        table.add_row(label, *cells, f"{ratio['vs_kopf']:.2f}", f"{ratio['vs_bare']:.2f}")

    row("live: create N, until all committed", "live", "ev")
    row("backlog, each alone: start to N committed (median)", "backlog_alone", "pods")
    row("backlog, all three at once", "backlog_together", "pods")
    row("down burst: delete N, until all withdrawn", "down_burst", "pods")
    mem = {n: r["backlog_alone"][n]["memory_mib"] for n in CONSUMERS}
    table.add_row("peak RSS (VmHWM), backlog alone",
                  *[f"{mem[n].get('VmHWM', 0):.0f} MiB" for n in CONSUMERS], "", "")
    cpu = {n: r["backlog_alone"][n].get("cpu_s") for n in CONSUMERS}
    if all(c is not None for c in cpu.values()):
        table.add_row("CPU time, backlog alone (start to N)", *[f"{cpu[n]:.2f} s" for n in CONSUMERS],
                      f"{cpu['kopf'] / cpu['bizcloud']:.2f}", f"{cpu['bare'] / cpu['bizcloud']:.2f}")
    table.add_row("start-up to first row", *[f"{r['startup_s'][n]:.1f} s" for n in CONSUMERS], "", "")
    rel = r["relist"]
    table.add_row("relist+reconcile after 410 (goal <= 2 s)", f"{rel['relist_reconcile_s']:.2f} s "
                  f"(list {rel['relist_list_s']:.2f} s)", "", "", "", "")
    table.add_row("fresh monitor takeover, full catalog", f"{rel['cold_takeover_s']:.2f} s", "", "", "", "")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor_throughput")
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="backlog runs of BizCloud and the bare loop each (medians are reported)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bizbench-") as state:
        results = run(bench_settings(Path(state) / "state"), pods=args.pods, rounds=args.rounds,
                      log=lambda m: console.print(f"[bold]{m}[/]"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    console.print_json(json.dumps(results))
    print_table(console, results)


if __name__ == "__main__":
    main()
