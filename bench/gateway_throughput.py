"""Gateway throughput beside plain nginx ``proxy_pass`` to the same pods, in the same run (goal >= 0.9x).

Both sides are Debian's nginx with the same worker count, keepalive pool and buffered JSON access
log, in front of the same sample-app pods on the developers' real cluster (a namespace of ours):

- ``gateway``: ``python -m bizcloud gateway`` as it ships (Lua router + balancer + stats), with the
  service's gray split on (ratio 20; two normal pods, one gray), every request carrying a random
  ``X-User-Id`` so the split is computed per request;
- ``plain``: a generated nginx.conf with a static ``upstream {}`` of the same three pod IPs.

``wrk`` (same Lua script, same connections) runs against each in turn, several rounds
interleaved so that noise from other work on the machine falls on both; the ratio is of medians.
Beside requests/s, each round reads the CPU time the side's nginx workers spent (``/proc``) and
divides by the requests served: on a machine shared with other work, requests/s swing with
whatever else runs, while CPU per request is what the proxy itself costs (``cpu_ratio``: plain's
CPU per request over the gateway's, the same sense as ``ratio``). Both ratios are also given per
round, beside the machine's load average before and after the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import RESULTS
from bench.gateway_stack import (
    FAST_BACKEND,
    PLAIN_PORT,
    answers,
    gateway_stack,
    sample_namespace,
    save_and_show,
)
from bizcloud.cluster.processes import wait_until
from bizcloud.gateway.process import children

GOAL_RATIO = 0.9
GRAY_RATIO = 20.0
ENV = "e2e"  # the sample app's labels (tests/e2e/conftest.py: demo_deployment)
WORKERS = 2

BACKENDS = {"fast": FAST_BACKEND, "sample": None}

WRK_SCRIPT = """\
-- a random user per request, so the gateway computes the gray split each time
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/", {["X-User-Id"] = "u" .. math.random(1, 1000000)})
end
"""

PLAIN_CONF = """\
# The peer of bench/gateway_throughput.py: plain proxy_pass to a static upstream.
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format plain escape=json '{{"time":"$time_iso8601","host":"$host","method":"$request_method",'
        '"uri":"$uri","status":$status,"duration_s":$request_time,"upstream":"$upstream_addr",'
        '"upstream_status":"$upstream_status"}}';
    access_log {prefix}/access.log plain buffer=64k flush=1s;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream pods {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 1000ms;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


def plain_conf(*, prefix: Path, port: int, peers: list[tuple[str, int]], workers: int) -> str:
    """The plain nginx's configuration for ``peers``. Purely computational."""
    servers = "\n".join(f"        server {ip}:{p};" for ip, p in peers)
    return PLAIN_CONF.format(prefix=prefix, port=port, servers=servers, workers=workers)


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, latency percentiles (ms) and error counts from ``wrk --latency``. Purely computational."""
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    result: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
                                "requests": float(re.search(r"(\d+) requests in", output).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE):
        result[f"p{pct}_ms"] = float(value) * units[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return result


def _wrk(url: str, script: Path, *, seconds: int, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    return parse_wrk(out)


def workers_cpu_s(master: int) -> float:
    """User + system CPU seconds the workers of the nginx ``master`` have used so far (``/proc``)."""
    ticks = 0
    for pid in children(master):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _measured_wrk(url: str, script: Path, master: int, **options: int) -> dict[str, float]:
    """``wrk`` against ``url``, with the CPU its nginx workers spent per request served (µs)."""
    before = workers_cpu_s(master)
    result = _wrk(url, script, **options)
    result["cpu_us_per_request"] = (workers_cpu_s(master) - before) / max(1.0, result["requests"]) * 1e6
    return result


@contextlib.contextmanager
def _plain_nginx(prefix: Path, peers: list[tuple[str, int]]) -> Iterator[int]:
    """The peer: Debian's nginx on ``plain_conf``, stopped on exit."""
    prefix.mkdir()
    conf = plain_conf(prefix=prefix, port=PLAIN_PORT, workers=WORKERS, peers=peers)
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=(prefix / "nginx.out").open("wb"))
    try:
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _gray_share(url: str, n: int = 400) -> float:
    """The share of random users the gateway sends to the gray pod (the sample app names its group)."""
    gray = 0
    with httpx.Client(timeout=5) as client:
        for i in range(n):
            body = client.get(url, headers={"X-User-Id": f"check-{i}"}).raise_for_status().json()
            gray += body.get("group") == "gray"
    return gray / n


def run(scratch: Path, *, rounds: int = 3, seconds: int = 10, connections: int = 32, threads: int = 2,
        backend: str = "fast", log: Callable[[str], None] = print) -> dict[str, Any]:
    """On the developers' real cluster (started if down, like the e2e fixture), in a namespace of ours."""
    service = f"gwt-{uuid.uuid4().hex[:6]}"
    with sample_namespace() as ns:
        ns.deploy(service, replicas=2, command=BACKENDS[backend])
        ns.deploy(f"{service}-gray", replicas=1, service=service, group="gray", command=BACKENDS[backend])
        stack_dir = scratch / "stack"
        stack_dir.mkdir()
        with gateway_stack(ns.cluster, stack_dir, workers=WORKERS) as stack:
            stack.route(service, ENV, gray_ratio=GRAY_RATIO)
            peers = wait_until(lambda: [p for p in [stack.peers(service, ENV)] if len(p) == 3][:1],
                               timeout=180, what="3 peers in the gateway")[0]
            wait_until(lambda: (stack.table().get("policies") or {}).get(service), timeout=30,
                       what="the gray policy in the gateway")
            peer_addrs = [(str(p["ip"]), int(p["port"])) for p in peers]
            with _plain_nginx(scratch / "plain", peer_addrs) as plain_master:
                targets = {"gateway": f"{stack.gateway}/", "plain": f"http://127.0.0.1:{PLAIN_PORT}/"}
                masters = {"gateway": int((stack_dir / "gateway" / "nginx.pid").read_text()),
                           "plain": plain_master}
                # every pod answers 200 (the sample app fails closed until it has loaded its whitelist)
                wait_until(lambda: all(answers(u) for u in targets.values() for _ in range(12)), timeout=120,
                           what="200s from every pod through both nginx")
                gray_share = _gray_share(targets["gateway"])
                script = scratch / "users.lua"
                script.write_text(WRK_SCRIPT)
                for url in targets.values():   # warm both: keepalive pools, Lua code caches
                    _wrk(url, script, seconds=2, connections=connections, threads=threads)
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                load_before = os.getloadavg()[0]
                for i in range(rounds):
                    for name, url in targets.items():
                        log(f"round {i + 1}/{rounds}: wrk {seconds} s against {name}…")
                        runs[name].append(_measured_wrk(url, script, masters[name], seconds=seconds,
                                                        connections=connections, threads=threads))
        return with_ratio({"rounds": rounds, "seconds": seconds, "connections": connections,
                           "wrk_threads": threads, "nginx_workers": WORKERS, "pods": 3, "backend": backend,
                           "gray_ratio": GRAY_RATIO, "gray_share_measured": gray_share,
                           # the machine's 1-minute load average around the rounds (2 cores, shared)
                           "load_avg": {"before": load_before, "after": os.getloadavg()[0]}, "runs": runs})


def with_ratio(r: dict[str, Any]) -> dict[str, Any]:
    """Median requests/s of each side and the gateway's ratio to plain nginx. Purely computational."""
    medians = {name: statistics.median(x["rps"] for x in runs) for name, runs in r["runs"].items()}
    pairs = list(zip(r["runs"]["gateway"], r["runs"]["plain"], strict=True))
    out = {**r, "median_rps": medians, "ratio": medians["gateway"] / medians["plain"],
           "ratio_per_round": [g["rps"] / p["rps"] for g, p in pairs]}
    if all("cpu_us_per_request" in x for runs in r["runs"].values() for x in runs):
        cpu = {name: statistics.median(x["cpu_us_per_request"] for x in runs)
               for name, runs in r["runs"].items()}
        out |= {"median_cpu_us_per_request": cpu, "cpu_ratio": cpu["plain"] / cpu["gateway"],
                "cpu_ratio_per_round": [p["cpu_us_per_request"] / g["cpu_us_per_request"] for g, p in pairs]}
    return out


def print_table(console: Console, r: dict[str, Any]) -> None:
    load = r.get("load_avg") or {}
    table = Table("side", "requests/s (median)", "p50", "p99", "errors", "nginx CPU / request",
                  title=f"gateway throughput, wrk -c{r['connections']} x {r['rounds']} x {r['seconds']} s "
                        f"(goal >= {GOAL_RATIO}x plain nginx)"
                        + (f", load {load['before']:.1f} -> {load['after']:.1f}" if load else ""))
    for name, runs in r["runs"].items():
        mid = sorted(runs, key=lambda x: x["rps"])[len(runs) // 2]
        errors = sum(x["non_2xx"] + x["socket_errors"] for x in runs)
        cpu = r.get("median_cpu_us_per_request", {}).get(name)
        table.add_row(name, f"{r['median_rps'][name]:,.0f}", f"{mid.get('p50_ms', 0):.2f} ms",
                      f"{mid.get('p99_ms', 0):.2f} ms", f"{errors:.0f}", f"{cpu:.1f} µs" if cpu else "")
    cpu_ratio = r.get("cpu_ratio")
    table.add_row("gateway / plain", f"{r['ratio']:.2f}", "", "", "",
                  f"{cpu_ratio:.2f} (plain / gateway)" if cpu_ratio else "")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_throughput")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="fast",
                        help="fast: pods that answer at once (the proxies' own cost); sample: the sample app")
    parser.add_argument("--json", type=Path, default=RESULTS / "gateway-throughput.json")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bizgw-") as tmp:
        results = run(Path(tmp), rounds=args.rounds, seconds=args.seconds, connections=args.connections,
                      backend=args.backend, log=lambda m: console.print(f"[bold]{m}[/]"))
    results = {"date": time.strftime("%Y-%m-%d"), **results}
    save_and_show(args.json, results, console, print_table)


if __name__ == "__main__":
    main()
