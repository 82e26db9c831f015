"""Detached daemons and pidfiles, with real processes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bizcloud.cluster import processes
from bizcloud.cluster.layout import Layout
from bizcloud.errors import ClusterError


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    lay = Layout(tmp_path)
    lay.create()
    return lay


def test_start_records_a_pidfile_and_stop_ends_the_process(layout: Layout) -> None:
    running = processes.start(layout, "sleeper", ["sleep", "300"])
    assert processes.read_pidfile(layout.pidfile("sleeper")) == running
    assert processes.stop(layout, "sleeper") is True
    assert not processes.alive(running.pid)
    assert not layout.pidfile("sleeper").exists()
    assert processes.stop(layout, "sleeper") is False


def test_a_reused_pid_is_not_taken_for_ours(layout: Layout) -> None:
    running = processes.start(layout, "sleeper", ["sleep", "300"])
    try:
        layout.pidfile("sleeper").write_text(json.dumps({"pid": running.pid, "started": "1"}))
        assert processes.read_pidfile(layout.pidfile("sleeper")) is None
    finally:
        processes.terminate(running.pid)


def test_wait_until_reports_a_dead_daemon_with_its_last_log_line(layout: Layout) -> None:
    running = processes.start(layout, "failing", ["sh", "-c", "echo 'bind: address already in use'; exit 1"])
    with pytest.raises(ClusterError, match="address already in use"):
        processes.wait_until(lambda: False, what="failing", timeout=10, log=layout.log("failing"),
                             pid=running.pid)


def test_port_owner_names_a_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert processes.port_owner(port) is not None
    assert processes.port_owner(port) is None
