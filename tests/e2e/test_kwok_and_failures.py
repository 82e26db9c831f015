"""kwok mode at scale, and the failures a user meets: busy ports, crashed daemons, no root.

These run a second, throwaway cluster with its own state directory and ports beside the real
one, so they never disturb it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bizcloud.cluster import lifecycle, processes
from bizcloud.errors import PrerequisiteError
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from tests.e2e.conftest import cli, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]

PORTS = {"etcd_port": 22379, "etcd_peer_port": 22380, "apiserver_port": 16443,
         "controller_manager_port": 20257, "scheduler_port": 20259, "kwok_port": 20247}


def _env(settings: Settings) -> dict[str, str]:
    env = {f"BIZCLOUD_{k.upper()}": str(v) for k, v in PORTS.items()}
    env["BIZCLOUD_STATE_DIR"] = str(settings.state_dir)
    return env


@pytest.fixture(scope="module")
def kwok_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("kwok") / "state", **PORTS)  # type: ignore[arg-type]
    yield settings
    lifecycle.down(settings, purge=True)


def _running_pods(kubectl: Kubectl, namespace: str) -> int:
    pods = kubectl.get_json("pods", "-n", namespace, timeout=120)["items"]
    return sum(1 for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP"))


def test_kwok_brings_100_nodes_and_1000_pods_to_running(kwok_settings: Settings) -> None:
    lifecycle.up(kwok_settings, mode="kwok", kwok_nodes=100)
    assert lifecycle.nodes_ready(kwok_settings) == (100, 100)
    kubectl = lifecycle.kubectl(kwok_settings)
    kubectl.run("create", "deployment", "scale", "--image=fake.local/scale:1", "--replicas=1000")
    wait_for(lambda: _running_pods(kubectl, "default") >= 1000, timeout=300, interval=2,
             what="1000 Running pods on kwok nodes")
    nodes = {p["spec"]["nodeName"] for p in kubectl.get_json("pods", "-n", "default")["items"]}
    assert len(nodes) > 50, "the scheduler should spread the pods over the simulated nodes"


def test_up_after_a_crash_cleans_the_stale_daemons(kwok_settings: Settings) -> None:
    lifecycle.up(kwok_settings, mode="kwok", kwok_nodes=100)
    layout = lifecycle.layout_of(kwok_settings)
    before = lifecycle.running_daemons(layout)
    os.kill(before["kube-apiserver"].pid, signal.SIGKILL)
    wait_for(lambda: not processes.alive(before["kube-apiserver"].pid), timeout=10, what="the kill")

    steps: list[str] = []
    lifecycle.up(kwok_settings, mode="kwok", kwok_nodes=100, step=steps.append)

    assert "cleaning up a half-started cluster" in steps
    after = lifecycle.running_daemons(layout)
    assert set(after) == set(lifecycle.daemons_for("kwok"))
    assert not [r.pid for r in before.values() if processes.alive(r.pid)]
    assert lifecycle.apiserver_ready(kwok_settings)


def test_up_in_the_other_mode_is_refused_while_up(kwok_settings: Settings) -> None:
    lifecycle.up(kwok_settings, mode="kwok", kwok_nodes=100)
    result = cli("cluster", "up", "--mode", "real", env=_env(kwok_settings), check=False)
    assert result.returncode == 1
    assert "up in kwok mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_down_leaves_no_process_and_frees_every_port(kwok_settings: Settings) -> None:
    lifecycle.up(kwok_settings, mode="kwok", kwok_nodes=100)
    pids = [r.pid for r in lifecycle.running_daemons(lifecycle.layout_of(kwok_settings)).values()]
    result = cli("cluster", "down", env=_env(kwok_settings))
    assert "kube-apiserver" in result.stderr
    assert not [pid for pid in pids if processes.alive(pid)]
    assert all(processes.port_owner(port) is None for port in PORTS.values())
    assert cli("cluster", "status", env=_env(kwok_settings), check=False).returncode == 1


def test_a_busy_port_is_named_with_the_setting_that_moves_it(kwok_settings: Settings) -> None:
    lifecycle.down(kwok_settings)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", PORTS["apiserver_port"]))
        squatter.listen()
        with pytest.raises(PrerequisiteError) as refused:
            lifecycle.up(kwok_settings, mode="kwok", kwok_nodes=1)
        assert f"pytest (pid {os.getpid()})" in refused.value.message
        assert "BIZCLOUD_APISERVER_PORT" in refused.value.hint
        result = cli("cluster", "up", "--mode", "kwok", env=_env(kwok_settings), check=False)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines and f"port {PORTS['apiserver_port']}" in lines[0]
    assert "Traceback" not in result.stderr
    assert not lifecycle.running_daemons(lifecycle.layout_of(kwok_settings))


def test_a_real_node_without_root_says_so_in_one_line(tmp_path: Path) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "BIZCLOUD_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    result = subprocess.run([*nobody, sys.executable, "-m", "bizcloud", "cluster", "up"], capture_output=True,
                            text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert "needs root" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_json_of_a_stopped_cluster_is_still_json(tmp_path: Path) -> None:
    result = cli("cluster", "status", "--json", env={"BIZCLOUD_STATE_DIR": str(tmp_path / "none")},
                 check=False)
    assert json.loads(result.stdout)["up"] is False
