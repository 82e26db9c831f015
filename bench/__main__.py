"""`python -m bench`: build time, warm `cluster up`, pod start-up latency; JSON and a table.

The benchmark cluster runs beside any cluster of `make up` (see common.py) and is purged at
the end. There is no peer cluster to run side by side here (kind, minikube and k3d all need
images pulled from the internet), so start-up latency is reported against Kubernetes' SLO.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import (
    authz_mysql,
    build_time,
    cluster_up,
    gateway_latency,
    gateway_throughput,
    monitor_throughput,
    pod_startup,
    release_render,
    soa_latency,
)
from bench.common import RESULTS, bench_settings, percentile, summary
from bizcloud import stack
from bizcloud.settings import get_settings

SLO_P99_S = 5.0
# Pods created per second in the paced run: about what one 2-core node sustains (see README).
PACED_RATE = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold Go build (many minutes)")
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--monitor-pods", type=int, default=10000,
                        help="pods of the monitor benchmark in kwok mode (0 skips it; ~10 min at 10,000)")
    parser.add_argument("--gateway", action=argparse.BooleanOptionalAction, default=True,
                        help="the gateway benchmarks: Ready -> routable (1,000 kwok pods, real pods), wrk")
    parser.add_argument("--soa", action=argparse.BooleanOptionalAction, default=True,
                        help="SOA registry: DOWN -> consumer stops using it, beside Dubbo's ephemeral nodes")
    parser.add_argument("--authz", action=argparse.BooleanOptionalAction, default=True,
                        help="MySQL grants: 1,000 converged from scratch beside one client per grant")
    parser.add_argument("--release", action=argparse.BooleanOptionalAction, default=True,
                        help="templates: render 1,000 beside helm template, apply 100 beside kubectl")
    args = parser.parse_args()
    console = Console()
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": machine}

    console.print("[bold]build time[/] (cold includes module downloads)…")
    results["build"] = build_time.run(get_settings().cache_dir, cold=not args.skip_cold)

    with tempfile.TemporaryDirectory(prefix="bizbench-") as scratch:
        settings = bench_settings(Path(scratch) / "state")
        try:
            console.print("[bold]cluster up[/]…")
            results["cluster_up"] = cluster_up.run(settings)
            for label, rate in (("paced", PACED_RATE), ("burst", None)):
                console.print(f"[bold]pod start-up[/], {args.pods} pods, {label}…")
                startup = pod_startup.run(settings, pods=args.pods, rate=rate)
                results[f"pod_startup_{label}"] = {
                    "pods": args.pods, "rate_per_s": rate, "started": summary(startup["started_s"]),
                    "ready": summary(startup["ready_s"]),
                    "p99_vs_slo": percentile(startup["started_s"], 99) / SLO_P99_S}
        finally:
            stack.down(settings, purge=True, step=lambda _: None)  # the dockerd it started, too

    if args.monitor_pods:
        with tempfile.TemporaryDirectory(prefix="bizbench-") as scratch:
            console.print(f"[bold]monitor throughput[/], {args.monitor_pods} pods in kwok mode…")
            results["monitor"] = monitor_throughput.run(bench_settings(Path(scratch) / "state"),
                                                        pods=args.monitor_pods, log=console.print)

    if args.gateway:
        with tempfile.TemporaryDirectory(prefix="bizgw-") as scratch:
            console.print("[bold]gateway[/]: Ready -> routable, then throughput beside plain nginx…")
            results["gateway"] = _gateway(Path(scratch), console)

    if args.soa:
        console.print("[bold]SOA registry[/]: DOWN -> consumer, beside ephemeral nodes after kill -9…")
        results["soa"] = soa_latency.run(log=console.print)

    if args.authz:
        console.print("[bold]MySQL grants[/]: 1,000 from scratch beside one client per grant…")
        results["authz_mysql"] = authz_mysql.run(log=console.print)

    if args.release:
        console.print("[bold]release templates[/]: render beside helm template, apply beside kubectl…")
        results["release"] = release_render.run(log=console.print)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    _print(console, results)
    if "monitor" in results:
        monitor_throughput.print_table(console, results["monitor"])
    if "gateway" in results:
        gateway_latency.print_table(console, results["gateway"]["latency"])
        gateway_throughput.print_table(console, results["gateway"]["throughput"])
    if "soa" in results:
        soa_latency.print_table(console, results["soa"])
    if "authz_mysql" in results:
        authz_mysql.print_table(console, results["authz_mysql"])
    if "release" in results:
        release_render.print_table(console, results["release"])


def _gateway(scratch: Path, console: Console) -> dict[str, Any]:
    say = lambda m: console.print(f"  {m}")  # noqa: E731
    for part in ("kwok", "real", "throughput"):
        (scratch / part).mkdir()
    latency = {"kwok": gateway_latency.run_kwok(scratch / "kwok", log=say),
               "real": gateway_latency.run_real(scratch / "real", log=say)}
    return {"latency": latency, "throughput": gateway_throughput.run(scratch / "throughput", log=say)}


def _print(console: Console, r: dict[str, Any]) -> None:
    table = Table("measure", "figure", title=f"BizCloud benchmarks ({r['date']}, {r['machine']})")
    build = r["build"]
    if "cold_s" in build:
        table.add_row("cold build (empty Go caches)", f"{build['cold_s']:.0f} s")
    table.add_row("relink build (warm Go caches)", f"{build['relink_s']:.0f} s")
    table.add_row("warm build (cached binaries)", f"{build['warm_s']:.2f} s")
    up = r["cluster_up"]
    table.add_row("first cluster up (fresh state)", f"{up['first_up_s']:.1f} s")
    table.add_row("warm cluster up to Ready node (median of 3)", f"{up['warm_up_median_s']:.1f} s")
    for label in ("paced", "burst"):
        run = r[f"pod_startup_{label}"]
        how = f"{run['rate_per_s']:.0f} pods/s" if run["rate_per_s"] else "all at once"
        started, ready = run["started"], run["ready"]
        table.add_row(f"pod start-up p50 / p99, {run['pods']} pods {how}",
                      f"{started['p50']:.2f} s / {started['p99']:.2f} s")
        table.add_row(f"  p99 / SLO 5 s ({label}; below 1 meets it)", f"{run['p99_vs_slo']:.2f}")
        table.add_row(f"  to Ready p50 / p99 ({label})", f"{ready['p50']:.2f} s / {ready['p99']:.2f} s")
    console.print(table)


if __name__ == "__main__":
    main()
