"""The monitor's start-up imports stay lean: heavy modules it does not use keep off its import path.

The monitor is CPU-bound from its start until its backlog is committed, so every module it loads
first is part of that (``bench.monitor_throughput``). These pin what was taken off the path: the
MySQL driver (and the cryptography its authentication loads), httpx's command-line client (rich,
click, pygments), and what earlier rounds made lazy (kazoo, the local cluster's PKI, the CLI and
the web server). Real imports in fresh interpreters, checked by module name, not by timing; the
whole run against a real cluster is ``tests/e2e/test_monitor_imports.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Top-level packages the monitor's start must not import (each was measured on its path).
NOT_AT_START = ("pymysql", "cryptography", "rich", "click", "pygments", "kazoo", "typer", "fastapi",
                "uvicorn")


def _packages(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_importing_the_daemons_loads_no_mysql_driver_and_no_cli() -> None:
    code = "import sys, bizcloud.daemons; print('\\n'.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules = run.stdout.split()
    assert "bizcloud.daemons" in modules
    assert "bizcloud.authz.mysql" in modules  # the executor is there; only its driver waits
    # httpx's CLI is kept out by `python -m bizcloud monitor` itself (next test), not by this import
    loaded = _packages(modules) & {"pymysql", "cryptography", "kazoo", "typer", "fastapi", "uvicorn"}
    assert loaded == set()


def test_python_m_bizcloud_monitor_starts_without_them(tmp_path: Path) -> None:
    """`python -m bizcloud monitor` up to its first use of the cluster (a missing kubeconfig ends it
    there; the CLI's error handler loads typer and rich only after that, to report it)."""
    env = {**os.environ, "BIZCLOUD_STATE_DIR": str(tmp_path / "state"),
           "BIZCLOUD_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
           "BIZCLOUD_KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "BIZCLOUD_MONITOR_METRICS_PORT": "0"}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "bizcloud", "monitor"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert "cannot read kubeconfig" in run.stderr
    modules = [line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
               if line.startswith("import time:")]
    started = modules[:modules.index("bizcloud.daemons") + 1]
    assert "httpx" in started  # imported by the Kubernetes client; its CLI's modules are not
    assert _packages(started) & set(NOT_AT_START) == set()
