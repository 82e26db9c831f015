"""Detached daemons with pidfiles that cannot point at the wrong process.

A pidfile records the pid *and* the process start time read from /proc, so after a crash and pid
reuse `down` never signals a stranger. Daemons run in their own session with output appended to
one log file each, and outlive the `bizcloud` command that started them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bizcloud.cluster.layout import Layout
from bizcloud.errors import ClusterError, PrerequisiteError

T = TypeVar("T")


@dataclass(frozen=True)
class Running:
    pid: int
    started: str  # /proc/<pid>/stat field 22, ticks since boot


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def read_pidfile(path: Path) -> Running | None:
    """The live process a pidfile names, or None if it is gone (or the pid was reused)."""
    try:
        data = json.loads(path.read_text())
        running = Running(int(data["pid"]), str(data["started"]))
    except (OSError, ValueError, KeyError):
        return None
    return running if _start_ticks(running.pid) == running.started else None


def start(layout: Layout, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> Running:
    """Start ``argv`` detached, logging to ``logs/<name>.log``; record it in ``run/<name>.pid``."""
    log = layout.log(name)
    with log.open("ab") as sink:
        sink.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        sink.flush()
        try:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=layout.root,
                                    env={**os.environ, **(env or {})})
        except FileNotFoundError as e:
            raise PrerequisiteError(f"cannot start {name}: {argv[0]} not found",
                                    hint="run `make setup` (or `bizcloud cluster build`) first") from e
    started = _start_ticks(proc.pid) or ""
    layout.pidfile(name).write_text(json.dumps({"pid": proc.pid, "started": started, "argv": argv}))
    return Running(proc.pid, started)


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie counts as gone: it holds no ports, files or memory,
    and only its parent (maybe another process that started the cluster) can reap it."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def terminate(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = False
    while alive(pid):
        if time.monotonic() > deadline:
            if killed:
                raise ClusterError(f"process {pid} did not exit after SIGKILL",
                                   hint=f"check it with `ps -o pid,stat,cmd -p {pid}`")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed, deadline = True, time.monotonic() + 10
        time.sleep(0.05)


def stop(layout: Layout, name: str, *, timeout: float = 15.0) -> bool:
    """Stop the daemon ``name`` if it runs; True if something was stopped."""
    pidfile = layout.pidfile(name)
    running = read_pidfile(pidfile)
    pidfile.unlink(missing_ok=True)
    if running is None:
        return False
    terminate(running.pid, timeout=timeout)
    return True


def port_owner(port: int) -> str | None:
    """Who listens on TCP ``port`` on this host ('pid 123 (etcd)'), or None if it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            pass
        else:
            return None
    owner = "another process"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                             timeout=5, check=False).stdout
        found = re.findall(r'\("([^"]+)",pid=(\d+)', out)
        if found:
            owner = ", ".join(f"{name} (pid {pid})" for name, pid in dict.fromkeys(found))
    return owner


def require_free(port: int, *, what: str, setting: str) -> None:
    """Refuse a busy port in one line that names its owner and the setting that moves it."""
    owner = port_owner(port)
    if owner is not None:
        raise PrerequisiteError(
            f"port {port} (for {what}) is already in use by {owner}",
            hint=f"stop that process, or choose another port with BIZCLOUD_{setting.upper()}")


def wait_until(check: Callable[[], T], *, what: str, timeout: float, log: Path | None = None,
               pid: int | None = None, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail with the daemon's
    last log line if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        if pid is not None and not alive(pid):
            raise ClusterError(f"{what}: the process exited. {last_line(log)}",
                               hint=f"see {log}" if log else "")
        time.sleep(interval)
    raise ClusterError(f"{what}: not ready after {timeout:.0f}s. {last_line(log)}",
                       hint=f"see {log}" if log else "")


def last_line(log: Path | None) -> str:
    if log is None or not log.is_file():
        return ""
    with log.open("rb") as f:
        f.seek(max(0, log.stat().st_size - 8192))
        lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    return f"Last log line: {lines[-1][:300]}" if lines else ""
