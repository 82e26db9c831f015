"""`python -m bizcloud monitor` starts the daemon without building the CLI, and still answers as the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIZCLOUD = Path(sys.executable).parent / "bizcloud"  # the console script: always the Typer app


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "BIZCLOUD_STATE_DIR": str(tmp_path / "state"),
            "BIZCLOUD_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
            "BIZCLOUD_KUBECONFIG": str(tmp_path / "missing-kubeconfig"),
            "BIZCLOUD_MONITOR_METRICS_PORT": "0", "COLUMNS": "200"}


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_failing_monitor_reports_exactly_as_the_cli_does(tmp_path: Path) -> None:
    env = _env(tmp_path)
    light = _run([sys.executable, "-m", "bizcloud", "monitor"], env)
    full = _run([str(BIZCLOUD), "monitor"], env)
    assert light.returncode == full.returncode == 1
    assert "error: cannot read kubeconfig" in light.stderr
    assert "BIZCLOUD_KUBECONFIG" in light.stderr
    assert light.stderr == full.stderr
    assert light.stdout == full.stdout == ""


def test_the_monitor_loads_its_daemon_before_and_without_the_cli(tmp_path: Path) -> None:
    """Import order seen through -X importtime: the daemon's modules come first; typer only to
    report the error at the end (the CLI's handler), never before the daemon started."""
    run = _run([sys.executable, "-X", "importtime", "-m", "bizcloud", "monitor"], _env(tmp_path))
    modules = [line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
               if line.startswith("import time:")]
    assert "bizcloud.daemons" in modules
    assert modules.index("bizcloud.daemons") < modules.index("typer")


def test_monitor_help_is_the_cli(tmp_path: Path) -> None:
    env = _env(tmp_path)
    help_text = _run([sys.executable, "-m", "bizcloud", "monitor", "--help"], env).stdout
    full = _run([str(BIZCLOUD), "monitor", "--help"], env).stdout
    def same(text: str) -> list[str]:
        return [line.replace("python -m bizcloud", "bizcloud").rstrip() for line in text.splitlines()]

    assert same(help_text) == same(full)
    assert "Run the k8s-monitor" in help_text
