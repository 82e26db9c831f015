"""One nginx, run and watched by the gateway process: started on a seed, restarted on a fresh one.

nginx runs in the foreground (``daemon off``) as a child in its own process group, so the
gateway notices at once when it dies and can clean up workers a killed master left behind. Every
start writes the configuration and the seed first; ``init_by_lua`` loads the seed in the master
before any worker accepts a connection, so a restarted nginx answers its first request with the
catalog's routes. Instance changes never come through here: they are pushed to the admin port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bizcloud.errors import PrerequisiteError
from bizcloud.gateway.errors import GatewayError
from bizcloud.gateway.nginxconf import NGINX, GatewayConfig, GatewayPaths, render

log = logging.getLogger(__name__)


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (an nginx master's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


class Nginx:
    """The gateway's nginx: ``start(seed)``, ``alive()``, ``stop()``, ``worker_pids()``."""

    def __init__(self, config: GatewayConfig, paths: GatewayPaths) -> None:
        self.config = config
        self.paths = paths
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def worker_pids(self) -> list[int]:
        return children(self.pid) if self.alive() and self.pid else []

    def start(self, seed: dict[str, Any], *, timeout: float = 15.0) -> None:
        """Write the configuration and the seed, start nginx, return once its admin port answers."""
        if not Path(NGINX).is_file():
            raise PrerequisiteError(f"{NGINX} not found", hint="run `make setup` (installs Debian's nginx)")
        self._reap()
        self._kill_leftover()
        self.paths.create()
        self.paths.conf.write_text(render(self.config, self.paths))
        tmp = self.paths.seed.with_suffix(".tmp")
        tmp.write_text(json.dumps(seed))
        tmp.replace(self.paths.seed)
        argv = [NGINX, "-p", str(self.paths.prefix), "-c", str(self.paths.conf),
                "-e", str(self.paths.error_log)]
        with (self.paths.prefix / "logs" / "nginx.out").open("ab") as sink:
            self._proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          cwd=self.paths.prefix)
        self.starts += 1
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.config.admin_port}/healthz"
        while time.monotonic() < deadline:
            if not self.alive():
                raise GatewayError(f"nginx exited at start: {self._last_error()}",
                                   hint=f"see {self.paths.error_log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    log.info("nginx started pid=%s workers=%s revision=%s", self.pid, self.worker_pids(),
                             seed.get("revision"))
                    return
            time.sleep(0.02)
        raise GatewayError(f"nginx did not answer on {url} within {timeout:.0f}s: {self._last_error()}",
                           hint=f"see {self.paths.error_log}")

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful (SIGQUIT: finish requests in flight), then the whole process group."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("nginx did not quit in %.0fs: killing it", timeout)
        self._kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self._proc = None

    def _reap(self) -> None:
        """After nginx died: make sure none of its workers still holds the listening sockets."""
        if self._proc is not None:
            self._kill_group(self._proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def _kill_leftover(self) -> None:
        """An nginx of an earlier gateway process (killed without cleaning up) still on our prefix."""
        try:
            pid = int(self.paths.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        cmdline = Path(f"/proc/{pid}/cmdline")
        with contextlib.suppress(OSError):
            if str(self.paths.conf).encode() in cmdline.read_bytes():
                log.warning("stopping a leftover nginx pid=%s on %s", pid, self.paths.prefix)
                self._kill_group(pid)
                for _ in range(100):
                    if not cmdline.exists():
                        break
                    time.sleep(0.05)

    @staticmethod
    def _kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def _last_error(self) -> str:
        try:
            lines = self.paths.error_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no error log)"
        return lines[-1][:300] if lines else "(empty error log)"
