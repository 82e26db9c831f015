"""`bizcloud config …` and `bizcloud graph` as a user runs them, against the real API server and samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine
from bizcloud.stack import NODE_IP_PLACEHOLDER, SAMPLE_CONFIGS, SAMPLE_INVENTORY
from tests.catalog.test_api import Server, server

__all__ = ["server"]  # the catalog's fixture: the real app on uvicorn, on this test's database


@pytest.fixture
def env(server: Server, tmp_path: Path) -> dict[str, str]:
    engine = make_engine(server.db_url)
    accounts = AccountStore(engine)
    accounts.create_user(name="ops", password="ops-password", role=Role.OPS)
    token = accounts.issue_token(user="ops")
    engine.dispose()
    url = urlsplit(server.base_url)
    return {"BIZCLOUD_SERVER_HOST": str(url.hostname), "BIZCLOUD_SERVER_PORT": str(url.port),
            "BIZCLOUD_STATE_DIR": str(tmp_path / "state"), "BIZCLOUD_TOKEN": token}


def bizcloud(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bizcloud", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env, "COLUMNS": "200"}, check=False)


def test_samples_apply_and_read_back(env: dict[str, str], tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(SAMPLE_INVENTORY.read_text().replace(NODE_IP_PLACEHOLDER, "10.88.0.1"))
    raw = bizcloud(env, "config", "apply", str(SAMPLE_INVENTORY))  # the placeholder is refused, by field
    assert raw.returncode == 1 and "mysql.local.master.host: 'NODE_IP' is not valid" in raw.stderr

    done = bizcloud(env, "config", "apply", str(inventory), "--comment", "local pair")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Inventory inventory: version 1 (created)"
    done = bizcloud(env, "config", "apply", str(SAMPLE_CONFIGS), "--json")
    assert [(r["name"], r["status"]) for r in json.loads(done.stdout)["results"]] == [
        ("demo-web", "created"), ("demo-api", "created")]
    again = bizcloud(env, "config", "apply", str(SAMPLE_CONFIGS))
    assert again.stdout.splitlines() == ["Service demo-web: version 1 (unchanged)",
                                         "Service demo-api: version 1 (unchanged)"]

    listing = json.loads(bizcloud(env, "config", "ls", "--json").stdout)
    assert [(c["name"], c["version"]) for c in listing] == [
        ("inventory", 1), ("demo-api", 1), ("demo-web", 1)]
    shown = bizcloud(env, "config", "show", "demo-api")
    assert "user: demo_api" in shown.stdout and "privileges: [SELECT, INSERT]" in shown.stdout
    graph = bizcloud(env, "graph", "demo-api", "--format", "dot")
    assert graph.returncode == 0 and '"service:demo-api" -> "mysql:local"' in graph.stdout
    whole = json.loads(bizcloud(env, "graph").stdout)
    assert {"service:demo-web", "interface:io.bizcloud.demo.DemoApi"} <= {n["id"] for n in whole["nodes"]}


def test_history_diff_delete_and_refusals(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "svc.yaml"
    config.write_text("name: demo-x\nports: {http: 8080}\n")
    assert bizcloud(env, "config", "apply", str(config)).returncode == 0
    config.write_text("name: demo-x\nports: {http: 8081}\n")
    assert bizcloud(env, "config", "apply", str(config), "--comment", "new port").returncode == 0
    diff = bizcloud(env, "config", "diff", "demo-x", "1", "2")
    assert "-  http: 8080\n+  http: 8081\n" in diff.stdout
    old = bizcloud(env, "config", "show", "demo-x", "--version", "1")
    assert old.stdout == "name: demo-x\nports: {http: 8080}\n"
    assert "deleted in version 3" in bizcloud(env, "config", "delete", "demo-x").stdout
    history = json.loads(bizcloud(env, "config", "history", "demo-x", "--json").stdout)
    assert [(h["version"], h["deleted"], h["comment"]) for h in history] == [
        (1, False, ""), (2, False, "new port"), (3, True, "")]
    assert "new port" in bizcloud(env, "config", "history", "demo-x").stdout

    config.write_text("name: demo-y\nports: {http: 0}\ncolour: red\n")
    bad = bizcloud(env, "config", "apply", str(config))
    assert bad.returncode == 1
    assert "ports.http: 0 is not valid" in bad.stderr and "colour: unknown key" in bad.stderr
    missing = bizcloud(env, "config", "show", "nothing")
    assert missing.returncode == 1 and "no config named 'nothing'" in missing.stderr
    no_token = bizcloud({**env, "BIZCLOUD_TOKEN": ""}, "config", "delete", "demo-y")
    assert no_token.returncode == 1 and "BIZCLOUD_TOKEN" in no_token.stderr
    assert bizcloud(env, "graph", "--format", "svg").returncode == 2
