"""MySQL grants: 1,000 pod accounts converged from scratch, and one pod's grant added/removed.

`python -m bench.authz_mysql`. A throwaway MariaDB master + replica (``bizcloud.authz.mariadb``,
ports of its own) and two ways to make the same 1,000 accounts ``user@'<pod ip>'`` with SELECT
on one database, on the master and on the replica:

- **BizCloud**: ``MysqlExecutor.converge`` — one admin session kept per server, the accounts read
  back, the difference applied in one pass (statements batched per round trip);
- **the naive way** (the peer, as shell and salt states do it): one ``mariadb -e "CREATE USER …;
  GRANT …"`` client process per grant and server.

Then the latency of one converge when one pod arrives (one grant added among 1,000) and when it
leaves (dropped, sessions killed), over ``rounds`` repetitions each: this is the executor's share
of "pod Ready -> grant usable" (the goal for the whole path is 200 ms). Measured three ways,
interleaved round by round so each sees the same load (``MODES``): as the worker converges on a
pod event (kept session, only the changed account read back), as its periodic resync does
(``everything=True``: every owned account read back, drift repaired), and as the executor did
before it kept sessions (a new admin session and a full read-back every time) — the peer of this
change, side by side.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, summary
from bizcloud.authz import mariadb
from bizcloud.authz.grants import Grant, Kind, MysqlAccess, TargetPlan
from bizcloud.authz.mysql import MysqlExecutor
from bizcloud.configcenter.schema import Inventory, MysqlCluster, SecretRef, Server

MASTER_PORT, REPLICA_PORT = 33162, 33172
ADMIN = SecretRef(namespace="bizcloud-system", name="mariadb-admin")
USER, NAIVE_USER, DATABASE = "bench_api", "bench_naive", "bench"
GOAL_P99_S = 0.200
# How one pod's converge is timed: suffix -> (read every account back, open a new admin session).
MODES = {
    "": (False, False),        # a pod event: the kept session, only the changed account read back
    "_full": (True, False),    # the worker's resync: the kept session, every owned account read back
    "_before": (True, True),   # as before sessions were kept: a new session and a full read each time
}


class BenchCredentials:
    """Passwords from memory (BizCloud reads Kubernetes Secrets; the benchmark times the SQL side)."""

    def __init__(self, pair: mariadb.MariaDbPair) -> None:
        self._admin = (pair.admin_user, pair.admin_password)

    async def admin(self, ref: SecretRef) -> tuple[str, str]:
        return self._admin

    async def password(self, service: str, env: str, user: str) -> str:
        return "bench-password"


def _ip(i: int) -> str:
    return f"10.66.{i // 250}.{i % 250 + 1}"


def _plan(target: str, ips: list[str]) -> TargetPlan:
    access = MysqlAccess(USER, DATABASE, ("SELECT",), "bench-api", "bench")
    return TargetPlan(Kind.MYSQL, target, frozenset(Grant(Kind.MYSQL, ip, target, access) for ip in ips),
                      frozenset({USER}))


def _naive(pair: mariadb.MariaDbPair, port: int, ips: list[str], options: Path) -> float:
    """One client process per grant, as a shell loop or a salt state runs them."""
    client = shutil.which("mariadb") or "mariadb"
    started = time.monotonic()
    for ip in ips:
        sql = (f"SET SESSION sql_log_bin=0; CREATE USER IF NOT EXISTS '{NAIVE_USER}'@'{ip}' IDENTIFIED BY "
               f"'bench-password'; GRANT SELECT ON `{DATABASE}`.* TO '{NAIVE_USER}'@'{ip}';")
        subprocess.run([client, f"--defaults-extra-file={options}", "-h", "127.0.0.1", "-P", str(port),
                        "-e", sql], check=True, capture_output=True)
    return time.monotonic() - started


async def _ours(executor: MysqlExecutor, targets: list[str], ips: list[str], rounds: int,
                log: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for target in targets:
        started = time.monotonic()
        converged = await executor.converge(_plan(target, ips))
        result[f"from_scratch_s[{target}]"] = time.monotonic() - started
        assert len(converged.added) == len(ips)
    log(f"  one pod arrives / leaves among {len(ips)}, {rounds} rounds on the master…")
    samples: dict[str, list[float]] = {f"{what}{mode}": [] for what in ("add_one", "remove_one")
                                       for mode in MODES}
    for i in range(rounds):  # the modes interleaved, so each sees the same load
        wanted = {"add_one": [*ips, _ip(len(ips) + i)], "remove_one": ips}
        for mode, (everything, new_session) in MODES.items():
            for what, grants in wanted.items():
                if new_session:
                    executor.close()  # outside the clock: the next converge connects again
                started = time.monotonic()
                converged = await executor.converge(_plan(targets[0], grants), everything=everything)
                samples[f"{what}{mode}"].append(time.monotonic() - started)
                assert len(converged.added if what == "add_one" else converged.removed) == 1
    result.update({key: summary(values) for key, values in samples.items()})
    result["p99_vs_goal"] = max(percentile(samples["add_one"], 99),
                                percentile(samples["remove_one"], 99)) / GOAL_P99_S
    before, now = (result[f"add_one{m}"]["p50"] + result[f"remove_one{m}"]["p50"] for m in ("_before", ""))
    result["pod_event_vs_before_p50"] = before / now
    executor.close()
    return result


def run(*, grants: int = 1000, rounds: int = 200, log: Any = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bizbench-mariadb-") as scratch:
        directory = Path(scratch)
        pair = mariadb.start_pair(directory, master_port=MASTER_PORT, replica_port=REPLICA_PORT,
                                  bind=["127.0.0.1"])
        try:
            mariadb.create_database(pair, DATABASE, ["CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY)"])
            inventory = Inventory(mysql={"bench": MysqlCluster(
                master=Server(host="127.0.0.1", port=MASTER_PORT),
                slaves=(Server(host="127.0.0.1", port=REPLICA_PORT),), admin=ADMIN)})
            executor = MysqlExecutor(lambda: inventory, BenchCredentials(pair))
            targets = [f"bench/127.0.0.1:{MASTER_PORT}", f"bench/127.0.0.1:{REPLICA_PORT}"]
            ips = [_ip(i) for i in range(grants)]
            log(f"  BizCloud: {grants} grants from scratch on master and replica…")
            ours = asyncio.run(_ours(executor, targets, ips, rounds, log))
            options = directory / "client.cnf"
            fd = os.open(options, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"[client]\nuser={pair.admin_user}\npassword={pair.admin_password}\n")
            log(f"  the naive way: {grants} client processes per server…")
            ports = dict(zip(targets, (MASTER_PORT, REPLICA_PORT), strict=True))
            naive = {t: _naive(pair, port, ips, options) for t, port in ports.items()}
        finally:
            mariadb.stop_pair(directory)
    ours_total = sum(ours[f"from_scratch_s[{t}]"] for t in targets)
    naive_total = sum(naive.values())
    return {"grants": grants, "servers": 2,
            "bizcloud_from_scratch_s": ours_total,
            "bizcloud_from_scratch_per_server_s": {t: ours[f"from_scratch_s[{t}]"] for t in targets},
            "naive_from_scratch_s": naive_total, "naive_per_server_s": naive,
            "naive_over_bizcloud": naive_total / ours_total,
            "add_one": ours["add_one"], "remove_one": ours["remove_one"],
            **{f"{what}{mode}": ours[f"{what}{mode}"] for what in ("add_one", "remove_one")
               for mode in MODES if mode},
            "pod_event_vs_before_p50": ours["pod_event_vs_before_p50"],
            "goal_p99_s": GOAL_P99_S, "p99_vs_goal": ours["p99_vs_goal"]}


def print_table(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415 - only when printing

    table = Table("MySQL grants (MariaDB master + replica)", "figure", title="Authorization: DB executor")
    table.add_row(f"BizCloud: {r['grants']} grants from scratch, both servers",
                  f"{r['bizcloud_from_scratch_s']:.2f} s")
    table.add_row("naive: one mariadb client per grant, both servers", f"{r['naive_from_scratch_s']:.1f} s")
    table.add_row("naive / BizCloud", f"{r['naive_over_bizcloud']:.0f}x")
    for label, key in (("one pod arrives (1 grant added)", "add_one"),
                       ("one pod leaves (dropped + killed)", "remove_one"),
                       ("resync (full read-back): arrives", "add_one_full"),
                       ("resync (full read-back): leaves", "remove_one_full"),
                       ("as before (new session, full read): arrives", "add_one_before"),
                       ("as before (new session, full read): leaves", "remove_one_before")):
        s = r[key]
        table.add_row(f"{label}: p50 / p99", f"{s['p50'] * 1000:.1f} ms / {s['p99'] * 1000:.1f} ms")
    table.add_row("p99 / 200 ms goal (below 1 meets it)", f"{r['p99_vs_goal']:.2f}")
    table.add_row("before / now, p50 of one pod's converge", f"{r['pod_event_vs_before_p50']:.1f}x")
    console.print(table)


if __name__ == "__main__":
    import json

    from rich.console import Console

    from bench.common import RESULTS

    result = run()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "authz_mysql.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print_table(Console(), result)
