"""What the console's end-to-end modules share: their own server and monitor, Chromium, logging in.

Each module starts its own `bizcloud server` and `bizcloud monitor` (``own_stack``: their own
catalog database, state directory, Lease and ports), so it neither sees nor disturbs what
`make up` runs or what another module started. The browser is Debian's Chromium driven by
Playwright, headless, nothing downloaded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.cluster import lifecycle
from bizcloud.settings import Settings
from tests.e2e.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "console-e2e-pass"


def in_thread(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own loop in a thread: sync Playwright holds a loop in the main thread."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, test(*args, **kwargs)).result()
    return run


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    def answers() -> bool:
        assert proc.poll() is None, f"process died: {log.read_text()[-2000:]}"
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(answers, timeout=60, what=url)


def create_users(db_url: str, users: dict[str, Role]) -> dict[str, str]:
    """Migrate the module's database and create its users (password ``PASSWORD``); an API token each."""
    engine = make_engine(db_url)
    migrate_engine(engine)
    accounts = AccountStore(engine)
    tokens = {}
    for name, role in users.items():
        accounts.create_user(name=name, password=PASSWORD, role=role)
        tokens[name] = accounts.issue_token(user=name, name="e2e")
    engine.dispose()
    return tokens


@contextmanager
def own_stack(cluster: Settings, tmp: Path, *, db_url: str, server_port: int, metrics_port: int, lease: str,
              extra_env: dict[str, str] | None = None,
              monitor: bool = True) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """`bizcloud server` and `bizcloud monitor` (unless ``monitor=False``: pages and shells need no
    instances) on the module's database and ports, stopped on exit."""
    env = {**os.environ, "BIZCLOUD_DATABASE_URL": db_url, "BIZCLOUD_STATE_DIR": str(tmp / "state"),
           "BIZCLOUD_KUBECONFIG": str(lifecycle.kubeconfig_path(cluster)),
           "BIZCLOUD_SERVER_PORT": str(server_port), "BIZCLOUD_MONITOR_METRICS_PORT": str(metrics_port),
           "BIZCLOUD_MONITOR_LEASE_NAME": lease, "BIZCLOUD_MONITOR_RESYNC_S": "5",
           "BIZCLOUD_MONITOR_GRACE_S": "1", "BIZCLOUD_SHELL_KEEPALIVE_S": "1",
           "BIZCLOUD_DOCKER_HOST": cluster.docker_host, **(extra_env or {})}
    if not monitor:  # nothing here would open the `bizcloud.io/authorized` gate of what it deploys
        env.setdefault("BIZCLOUD_RELEASE_AUTHORIZED_GATE", "false")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, probe in (("server", f"http://127.0.0.1:{server_port}/healthz"),
                            ("monitor", f"http://127.0.0.1:{metrics_port}/metrics"))[:2 if monitor else 1]:
            log = tmp / f"{name}.log"
            proc = subprocess.Popen([sys.executable, "-m", "bizcloud", name], env=env, stdout=log.open("wb"),
                                    stderr=subprocess.STDOUT)
            procs[name] = proc
            wait_http(probe, proc, log)
        yield procs
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def login(page: Any, url: str, user: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console/")
