"""Ready -> routable: from a pod's Ready transition to the gateway routing to it (goal p99 <= 50 ms).

The path measured is the whole one: kubelet/kwok marks the pod Ready -> the monitor's watch -> an UP
committed to the catalog -> the monitor's push into nginx's shared dict (``gateway/direct.py``; the
syncer's delta from the change stream when that comes first). The Ready time is when this process's
own watch on the pods sees the pod Ready (the monitor reads the same stream, so watch delivery is not
counted, but everything after it is). This process keeps its own load low while it measures: it
picks the churn's victims from its watch instead of listing the pods, and reads the table twice a
second (nginx stamps ``added`` itself).

- ``kwok``: 1,000 kwok pods on an isolated cluster (``gateway_bench_settings``) churning: every
  0.5 s a batch of pods is deleted and the Deployment replaces them. kwok pods serve nothing, so
  "routable" is the ``added`` time (epoch s, ms precision) of the peer in the gateway's upstream table.
- ``real``: sample-app pods on the developers' real cluster (its own namespace; the stack on its own
  ports). One pod serves; the Deployment is scaled to 2 and back, again and again; "routable" is the
  first answer through the gateway that names the new pod (requests run back to back, and round robin
  sends every other one to it) — and the table's ``added`` too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS, summary
from bench.gateway_stack import (
    FAST_BACKEND,
    GatewayStack,
    Observer,
    gateway_bench_settings,
    gateway_stack,
    sample_namespace,
    save_and_show,
)
from bench.sched_probe import Floor
from bizcloud.cluster import lifecycle
from bizcloud.cluster.processes import read_pidfile, wait_until
from bizcloud.kube.kubectl import is_ready
from bizcloud.settings import Settings

GOAL_P99_MS = 50.0
KWOK_SERVICE, KWOK_ENV, KWOK_NS = "gw-bench", "bench", "bench-gateway"
REAL_ENV = "e2e"  # the sample app's labels (tests/e2e/conftest.py: demo_deployment)


# --- observing: Ready on the watch, ``added`` in the table, the first answer ---------------------

def _serving(pod: dict[str, Any]) -> bool:
    """Ready, with an IP, not being deleted: what the monitor announces as UP. Purely computational."""
    return is_ready(pod) and not pod["metadata"].get("deletionTimestamp") \
        and bool((pod.get("status") or {}).get("podIP"))


class ReadyWatch(Observer):
    """Notes when this process first sees each pod (by uid) Ready with an IP and not deleting, and
    which pods serve now (the churn picks its victims there: listing 1,000 pods every half second
    cost this process ~30 ms of CPU each time, on the cores the measured stack runs on)."""

    def __init__(self, cluster: Settings, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.ready_at: dict[str, float] = {}
        self.names: dict[str, str] = {}
        self.unmeasured: set[str] = set()
        self._serving: dict[str, str] = {}   # uid -> name, of the pods serving now
        self._lock = threading.Lock()
        super().__init__()

    def serving_names(self, *, min_age_s: float = 2.0) -> list[str]:
        """The pods serving now, except those that became Ready less than ``min_age_s`` ago: the
        table is read every half second, and a pod deleted before it was seen there has no
        routable time at all."""
        recent = time.time() - min_age_s
        with self._lock:
            return [name for uid, name in self._serving.items() if self.ready_at.get(uid, 0.0) < recent]

    def _note(self, pod: dict[str, Any], *, deleted: bool = False) -> None:
        meta = pod.get("metadata") or {}
        with self._lock:
            if not deleted and _serving(pod):
                self._serving[meta["uid"]] = meta["name"]
            else:
                self._serving.pop(meta.get("uid", ""), None)

    def _run(self) -> None:
        while not self.stop.is_set():
            # a watch cut short (the cluster stops at the end of the run) is reopened until stopped
            with contextlib.suppress(httpx.HTTPError):
                self._watch()

    def _watch(self) -> None:
        base = f"/api/v1/namespaces/{self.namespace}/pods"
        with lifecycle.admin_http(self.cluster) as client:
            listing = client.get(base).raise_for_status().json()
            # Ready before this watch opened (at the start, or in a gap after a cut): no Ready time
            self.unmeasured |= {p["metadata"]["uid"] for p in listing["items"]} - set(self.ready_at)
            with self._lock:
                self._serving.clear()
            for listed in listing["items"]:
                self._note(listed)
            version = listing["metadata"]["resourceVersion"]
            with client.stream("GET", base, params={"watch": "true", "resourceVersion": version,
                                                    "timeoutSeconds": "600"}, timeout=None) as response:
                for line in response.iter_lines():
                    now = time.time()
                    event = json.loads(line)
                    pod = event.get("object") or {}
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._note(pod, deleted=event["type"] == "DELETED")
                    meta = pod.get("metadata") or {}
                    uid = meta.get("uid")
                    if uid and uid not in self.ready_at and uid not in self.unmeasured and _serving(pod):
                        self.ready_at[uid], self.names[uid] = now, meta["name"]
                    if self.stop.is_set():
                        return


class TableWatch(Observer):
    """Polls the gateway's upstream table and keeps each peer's first ``added`` time, by pod uid.
    nginx stamps ``added`` itself when a push puts the peer, so how often this polls changes no
    figure; it only has to see each peer before it leaves (a table of 1,000 peers is ~70 KB of
    JSON for nginx to encode and this process to decode: not ten times a second)."""

    def __init__(self, stack: GatewayStack, service: str, env: str, *, interval: float = 0.5) -> None:
        self.stack, self.service, self.env, self.interval = stack, service, env, interval
        self.added: dict[str, float] = {}
        self.count = 0
        super().__init__()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                peers = self.stack.peers(self.service, self.env)
            except httpx.HTTPError:
                peers = []
            self.count = len(peers)
            for peer in peers:
                self.added.setdefault(str(peer["uid"]), float(peer["added"]))
            time.sleep(self.interval)


class FirstAnswer(Observer):
    """Requests through the gateway, one every ``pause`` seconds at most; keeps when each pod (by
    name) first answered. Back to back, this loop alone kept a core busy (Python's HTTP client)
    on the machine whose latency it measures; a 2 ms pause adds at most 2 ms to a first answer."""

    def __init__(self, url: str, *, pause: float = 0.002) -> None:
        self.url, self.pause = url, pause
        self.first: dict[str, float] = {}
        self.failures = 0
        self.requests = 0
        super().__init__()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                time.sleep(self.pause)
                try:
                    response = client.get(self.url)
                except httpx.HTTPError:
                    self.failures += 1
                    continue
                now = time.time()
                self.requests += 1
                if response.status_code != 200:
                    self.failures += 1
                    continue
                self.first.setdefault(str(response.json().get("pod")), now)


def latencies_ms(ready_at: dict[str, float], routable_at: dict[str, float], keys: list[str]
                 ) -> tuple[list[float], list[str], list[str]]:
    """Milliseconds from Ready to routable for each key; the keys never routable; the keys routable
    *before* Ready. Purely computational.

    The last happen when a new pod gets the address of one still in the table (kwok hands freed
    IPs out again at once, and a DOWN waits for the monitor's grace period): the gateway keeps an
    address's ``added`` time across pushes, so the new pod inherits the old one's. They are left
    out of the figures and counted.
    """
    found, early = [], []
    for k in keys:
        if k in routable_at:
            ms = (routable_at[k] - ready_at[k]) * 1000
            if ms >= 0:
                found.append(ms)
            else:
                early.append(k)
    return found, [k for k in keys if k not in routable_at], early


def _stages(ready_at: dict[str, float], committed_at: dict[str, float], added: dict[str, float],
            keys: list[str]) -> dict[str, dict[str, float]]:
    """Ready -> committed (the monitor) and committed -> in the table (its push into nginx, or the
    syncer's delta when that comes first), over the keys with all three times and no inherited
    ``added``. Purely computational."""
    keys = [k for k in keys if k in committed_at and k in added and added[k] >= ready_at[k]]
    if not keys:
        return {}
    monitor, _, _ = latencies_ms(ready_at, committed_at, keys)
    pushed, _, _ = latencies_ms(committed_at, added, keys)
    return {"ready_to_committed_ms": summary(monitor), "committed_to_table_ms": summary(pushed)}


# --- the monitor's own split of seen -> committed (its /metrics) --------------------------------

MONITOR_STAGES = ("queued", "thread_wait", "apply", "resume")


def stage_buckets(metrics_text: str) -> dict[str, dict[float, float]]:
    """The cumulative bucket counts of ``bizcloud_catalog_stage_seconds`` per stage, from a
    Prometheus text page. Purely computational."""
    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "bizcloud_catalog_stage_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                out.setdefault(sample.labels["stage"], {})[float(sample.labels["le"])] = sample.value
    return out


def bucket_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """p50/p99 (ms, the upper bound of the bucket holding them) and n of what was observed between
    two scrapes of one cumulative histogram. Purely computational."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    n = counts[-1] if counts else 0.0
    result: dict[str, float] = {"n": n}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        bound = next((b for b, c in zip(bounds, counts, strict=True) if n and c >= q * n), float("inf"))
        result[name] = bound * 1000
    return result


def monitor_stages(stack: GatewayStack) -> dict[str, dict[float, float]]:
    try:
        return stage_buckets(httpx.get(stack.monitor_metrics, timeout=10).text)
    except httpx.HTTPError:
        return {}


def stage_split(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
                ) -> dict[str, dict[str, float]]:
    """Per stage, what the monitor observed between two scrapes. Purely computational."""
    return {stage: bucket_quantiles(before.get(stage, {}), after[stage]) for stage in MONITOR_STAGES
            if stage in after}


# --- kwok: 1,000 pods churning -------------------------------------------------------------------

def _kwok_deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": KWOK_SERVICE, "bizcloud.io/service": KWOK_SERVICE, "bizcloud.io/env": KWOK_ENV,
              "bizcloud.io/group": "normal"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": KWOK_SERVICE},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": KWOK_SERVICE}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%"}},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "fake.local/bench:1",
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}


def _profile(stack: GatewayStack, out: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy (sampling, never pausing the process) on each of the stack's Python processes while the
    churn runs: collapsed stacks in ``out/<name>.txt``, to read where their time goes."""
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                              "--rate", "50", "--nonblocking", "--format", "raw",
                              "--output", str(out / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in stack.pids.items()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` (all its threads) has used, from /proc; 0 once it is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def renice_cluster(cluster: Settings, nice: int) -> list[int]:
    """Lower the CPU priority of the cluster's daemons (etcd, the API server, controller-manager,
    scheduler, kwok): their autogroups and every one of their threads; the pids reniced.

    Why: here the load generator — a control plane churning 1,000 pods — shares 2 cores with what
    is measured. In production it runs on machines of its own; at nice 10 it still gets every
    cycle nobody else wants, but no longer delays the monitor, the syncer and nginx when they
    wake. Each daemon leads a session of its own, and with the kernel's autogroup scheduling
    (``/proc/sys/kernel/sched_autogroup_enabled``, on in Debian's kernels) the scheduler shares
    the CPU between sessions first: a thread's own nice only ranks it inside its session. So
    the session's nice is set (``/proc/PID/autogroup``), and each thread's too, for kernels
    without autogroups (nice is per thread on Linux; new threads inherit it).
    """
    layout = lifecycle.layout_of(cluster)
    pids = []
    for pidfile in sorted(layout.run.glob("*.pid")):
        running = read_pidfile(pidfile)
        if running is None:
            continue
        with contextlib.suppress(OSError):   # no autogroups here: the threads' nice is what counts
            Path(f"/proc/{running.pid}/autogroup").write_text(f"{nice}\n")
        for task in Path(f"/proc/{running.pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
        pids.append(running.pid)
    return pids


@contextlib.contextmanager
def _reniced(cluster: Settings, nice: int, log: Callable[[str], None]) -> Iterator[None]:
    if not nice:
        yield
        return
    log(f"the cluster's daemons at nice {nice}: {renice_cluster(cluster, nice)}")
    try:
        yield
    finally:
        renice_cluster(cluster, 0)


def run_kwok(scratch: Path, *, pods: int = 1000, churn_s: float = 60.0, batch: int = 10,
             server_poll_s: float | None = None, profile: Path | None = None, cluster_nice: int = 0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring up our kwok cluster, 1,000 pods, the stack; churn; tear it all down. ``profile``: a
    directory for py-spy profiles of the stack's processes during the churn; ``cluster_nice``: see
    ``renice_cluster``."""
    cluster = gateway_bench_settings(scratch / "cluster")
    nodes = max(10, -(-pods * 105 // 100 // 110))
    try:
        log(f"kwok cluster with {nodes} nodes…")
        lifecycle.up(cluster, mode="kwok", kwok_nodes=nodes)
        if cluster_nice:
            log(f"the cluster's daemons at nice {cluster_nice}: {renice_cluster(cluster, cluster_nice)}")
        with lifecycle.admin_http(cluster) as api:
            api.timeout = httpx.Timeout(120)
            api.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": KWOK_NS}})
            wait_until(lambda: api.get(f"/api/v1/namespaces/{KWOK_NS}/serviceaccounts/default").status_code
                       == 200, timeout=60, what="the default ServiceAccount")
            api.post(f"/apis/apps/v1/namespaces/{KWOK_NS}/deployments",
                     json=_kwok_deployment(pods)).raise_for_status()
            stack_dir = scratch / "stack"
            stack_dir.mkdir()
            with gateway_stack(cluster, stack_dir, server_poll_s=server_poll_s) as stack:
                stack.route(KWOK_SERVICE, KWOK_ENV)
                log(f"waiting for {pods} peers in the gateway…")
                wait_until(lambda: len(stack.peers(KWOK_SERVICE, KWOK_ENV)) == pods, timeout=600,
                           what=f"{pods} peers in the gateway", interval=1)
                ready, table = ReadyWatch(cluster, KWOK_NS), TableWatch(stack, KWOK_SERVICE, KWOK_ENV)
                for watcher in (ready, table):
                    watcher.start()
                time.sleep(2)   # the watch is open
                profilers = _profile(stack, profile, churn_s) if profile else []
                stages_before = monitor_stages(stack)
                cpu_before = {name: cpu_seconds(pid) for name, pid in stack.pids.items()}
                floor = Floor()
                log(f"churn: {batch} pods deleted every 0.5 s for {churn_s:.0f} s…")
                base = f"/api/v1/namespaces/{KWOK_NS}/pods"
                deleted = 0
                started = time.time()
                while time.time() - started < churn_s:
                    serving = ready.serving_names()
                    for name in random.sample(serving, min(batch, len(serving))):
                        api.delete(f"{base}/{name}", params={"gracePeriodSeconds": "0"})
                        deleted += 1
                    time.sleep(max(0.0, 0.5 - (time.time() - started) % 0.5))
                churned_s = time.time() - started
                wake_floor = floor.stop()
                cpu_share = {name: round((cpu_seconds(pid) - cpu_before[name]) / churned_s, 3)
                             for name, pid in stack.pids.items()}
                time.sleep(1)
                new = [uid for uid, at in ready.ready_at.items() if at >= started]
                wait_until(lambda: all(uid in table.added for uid in new), timeout=30,
                           what="every new pod in the table")
                for watcher in (ready, table):
                    watcher.stop.set()
                for profiler in profilers:
                    profiler.wait(timeout=60)
                values, missing, reused = latencies_ms(ready.ready_at, table.added, new)
                stages = _stages(ready.ready_at, stack.committed_at(), table.added, new)
                return {"pods": pods, "kwok_nodes": nodes, "churn_s": churn_s, "cluster_nice": cluster_nice,
                        "deleted": deleted,
                        "new_ready": len(new), "never_routable": len(missing), "address_reused": len(reused),
                        "ready_to_table_ms": summary(values), **stages,
                        "cpu_share_during_churn": cpu_share,   # cores each of the stack's processes used
                        "wakeup_round_trip_ms": wake_floor,    # the machine's floor (bench/sched_probe.py)
                        "monitor_stages_ms": stage_split(stages_before, monitor_stages(stack))}
    finally:
        lifecycle.down(cluster, purge=True)


# --- real pods: scale 1 -> 2 -> 1 ----------------------------------------------------------------

def run_real(scratch: Path, *, rounds: int = 20, server_poll_s: float | None = None, cluster_nice: int = 0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """On the developers' real cluster (started if down, like the e2e fixture), in a namespace of
    ours. ``cluster_nice``: its daemons' priority meanwhile (``renice_cluster``), restored after."""
    service = f"gwb-{uuid.uuid4().hex[:6]}"
    with sample_namespace() as ns, _reniced(ns.cluster, cluster_nice, log):
        cluster, kubectl, namespace = ns.cluster, ns.kubectl, ns.name
        ns.deploy(service, replicas=1, command=FAST_BACKEND)
        with gateway_stack(cluster, scratch, server_poll_s=server_poll_s) as stack:
            stack.route(service, REAL_ENV)
            wait_until(lambda: len(stack.peers(service, REAL_ENV)) == 1, timeout=120, what="the first peer")
            # the new pod lives from its Ready until its first answer and the scale-down: read often
            ready, table, probe = (ReadyWatch(cluster, namespace),
                                   TableWatch(stack, service, REAL_ENV, interval=0.05),
                                   FirstAnswer(f"{stack.gateway}/"))
            for watcher in (ready, table, probe):
                watcher.start()
            time.sleep(1)
            stages_before = monitor_stages(stack)
            floor = Floor()
            first_pods = set(ready.names.values()) | set(probe.first)
            new: list[str] = []
            for i in range(rounds):
                log(f"real pods: round {i + 1}/{rounds}")
                before = set(ready.ready_at)
                kubectl.run("scale", f"deployment/{service}", "-n", namespace, "--replicas=2")
                uid: str = wait_until(lambda b=before: next(iter(set(ready.ready_at) - b), ""),  # type: ignore[misc]
                                      timeout=120, what="the new pod Ready")
                name = ready.names[uid]
                wait_until(lambda n=name: n in probe.first, timeout=30,  # type: ignore[misc]
                           what="an answer from the new pod")
                new.append(uid)
                kubectl.run("scale", f"deployment/{service}", "-n", namespace, "--replicas=1")
                wait_until(lambda: table.count == 1, timeout=60, what="one peer again")
                time.sleep(0.5)
            for watcher in (ready, table, probe):
                watcher.stop.set()
            wake_floor = floor.stop()
            stages: dict[str, Any] = dict(_stages(ready.ready_at, stack.committed_at(), table.added, new))
            stages["monitor_stages_ms"] = stage_split(stages_before, monitor_stages(stack))
        by_name = {ready.names[u]: ready.ready_at[u] for u in new}
        answered, _, _ = latencies_ms(by_name, probe.first, [ready.names[u] for u in new if
                                                          ready.names[u] not in first_pods])
        in_table, _, _ = latencies_ms(ready.ready_at, table.added, new)
        return {"rounds": rounds, "requests": probe.requests, "failed_requests": probe.failures,
                "ready_to_first_answer_ms": summary(answered), "ready_to_table_ms": summary(in_table),
                **stages, "wakeup_round_trip_ms": wake_floor}


# --- report --------------------------------------------------------------------------------------

def print_table(console: Console, r: dict[str, Any]) -> None:
    table = Table("measure", "p50", "p99", "max", "n", title=f"gateway: Ready -> routable (goal p99 <= "
                                                               f"{GOAL_P99_MS:.0f} ms)")

    def row(label: str, s: dict[str, float]) -> None:
        table.add_row(label, f"{s['p50']:.0f} ms", f"{s['p99']:.0f} ms", f"{s['max']:.0f} ms", str(s["n"]))

    for mode in ("kwok", "real"):
        if mode not in r:
            continue
        m = r[mode]
        label = f"kwok, {m['pods']} pods churning" if mode == "kwok" else "real pods"
        if "ready_to_first_answer_ms" in m:
            row(f"{label}: Ready -> first answer through the gateway", m["ready_to_first_answer_ms"])
        row(f"{label}: Ready -> in the upstream table", m["ready_to_table_ms"])
        for key, what in (("ready_to_committed_ms", "Ready -> UP committed (monitor)"),
                          ("committed_to_table_ms", "committed -> in the table (the monitor's push)")):
            if key in m:
                row(f"  {what}", m[key])
        if "wakeup_round_trip_ms" in m:
            row("  the machine's floor meanwhile: a datagram's round trip between two idle processes",
                m["wakeup_round_trip_ms"])
        for stage, s in (m.get("monitor_stages_ms") or {}).items():
            table.add_row(f"    monitor {stage} (per event, bucket bound)", f"<= {s['p50']:.0f} ms",
                          f"<= {s['p99']:.0f} ms", "", f"{s['n']:.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_latency")
    parser.add_argument("--pods", type=int, default=1000, help="kwok pods (0 skips the kwok run)")
    parser.add_argument("--churn-s", type=float, default=60.0)
    parser.add_argument("--real-rounds", type=int, default=20, help="real pods scaled up (0 skips)")
    parser.add_argument("--server-poll-s", type=float, default=None,
                        help="run the server with this change-stream poll interval (default: its own, 50 ms)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the server, monitor and gateway during the kwok churn (collapsed "
                             "stacks in this directory; that run's figures are not the ones to report)")
    parser.add_argument("--cluster-nice", type=int, default=0,
                        help="run each cluster's daemons (the kwok churn's load generator; the real "
                             "cluster's API server, kubelet and containerd) at this nice value, as if on "
                             "machines of their own (see renice_cluster; restored after); 0: as is")
    parser.add_argument("--json", type=Path, default=RESULTS / "gateway-latency.json")
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C: the real cluster's priority is restored, the kwok cluster and
    # the stack are stopped (only a SIGKILL leaves the real cluster's daemons reniced).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "goal_p99_ms": GOAL_P99_MS,
                               "server_poll_s": args.server_poll_s or 0.05}
    say: Callable[[str], None] = lambda m: console.print(f"[bold]{m}[/]")  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bizgw-") as tmp:
        if args.pods:
            (Path(tmp) / "kwok").mkdir()
            results["kwok"] = run_kwok(Path(tmp) / "kwok", pods=args.pods, churn_s=args.churn_s,
                                       server_poll_s=args.server_poll_s, profile=args.profile,
                                       cluster_nice=args.cluster_nice, log=say)
        if args.real_rounds:
            (Path(tmp) / "real").mkdir()
            results["real"] = run_real(Path(tmp) / "real", rounds=args.real_rounds,
                                       cluster_nice=args.cluster_nice,
                                       server_poll_s=args.server_poll_s, log=say)
    save_and_show(args.json, results, console, print_table)


if __name__ == "__main__":
    main()
