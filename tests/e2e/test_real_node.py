"""The real local cluster: a Ready node whose pods are real processes with real, reachable IPs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from bizcloud import stack
from bizcloud.cluster import host, lifecycle, processes
from bizcloud.cluster.configs import cgroup_root
from bizcloud.cluster.versions import KUBERNETES_VERSION
from bizcloud.kube.kubectl import Kubectl, is_ready
from bizcloud.settings import Settings
from tests.e2e.conftest import cli, demo_deployment, deploy_sample_alone, ready_pods, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(kubectl: Kubectl, namespace: str, sample_image: str) -> str:
    kubectl.apply(demo_deployment(name="demo", namespace=namespace, image=sample_image, replicas=2))
    wait_for(lambda: len(ready_pods(kubectl, namespace, "app=demo")) == 2, timeout=120,
             what="2 Ready demo pods")
    return "app=demo"


def _get(ip: str, path: str = "/") -> dict[str, Any]:
    response = httpx.get(f"http://{ip}:8080{path}", timeout=5)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def test_the_node_is_ready_and_runs_the_pinned_kubernetes(kubectl: Kubectl, real_cluster: Settings) -> None:
    node = kubectl.get_json("node", real_cluster.node_name)
    assert is_ready(node)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == KUBERNETES_VERSION
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    server = json.loads(kubectl.run("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == KUBERNETES_VERSION


def test_pods_run_with_ips_that_answer_from_the_host(kubectl: Kubectl, namespace: str, demo: str) -> None:
    pods = ready_pods(kubectl, namespace, demo)
    assert len({p["status"]["podIP"] for p in pods}) == 2
    for pod in pods:
        body = _get(pod["status"]["podIP"])
        assert body["pod"] == pod["metadata"]["name"]
        assert body["ip"] == pod["status"]["podIP"]
        assert body["version"] == "v1"
        assert body["group"] == "normal"


def test_stock_kubectl_exec_runs_a_command_in_the_pod(kubectl: Kubectl, namespace: str, demo: str) -> None:
    pod = ready_pods(kubectl, namespace, demo)[0]["metadata"]["name"]
    assert kubectl.run("exec", "-n", namespace, pod, "--", "hostname").stdout.strip() == pod
    echoed = kubectl.run("exec", "-i", "-n", namespace, pod, "--", "cat", stdin="through stdin\n").stdout
    assert echoed == "through stdin\n"
    failed = kubectl.run("exec", "-n", namespace, pod, "--", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3


def test_a_deleted_pod_is_replaced_with_a_new_pod_and_ip(kubectl: Kubectl, namespace: str, demo: str) -> None:
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in ready_pods(kubectl, namespace, demo)}
    victim, victim_ip = next(iter(before.items()))
    kubectl.run("delete", "pod", "-n", namespace, victim, "--wait=true", timeout=60)

    def replaced() -> dict[str, str] | None:
        now = {p["metadata"]["name"]: p["status"]["podIP"] for p in ready_pods(kubectl, namespace, demo)}
        return now if len(now) == 2 and victim not in now else None

    after = wait_for(replaced, timeout=90, what="a replacement pod")
    (new_name, new_ip), = ((n, ip) for n, ip in after.items() if n not in before)
    assert new_ip != victim_ip
    assert _get(new_ip)["pod"] == new_name
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{victim_ip}:8080/", timeout=2)


def test_up_again_leaves_a_running_cluster_alone(real_cluster: Settings) -> None:
    before = lifecycle.running_daemons(lifecycle.layout_of(real_cluster))
    steps: list[str] = []
    lifecycle.up(real_cluster, mode="real", step=steps.append)
    assert steps == ["already up"]
    assert lifecycle.running_daemons(lifecycle.layout_of(real_cluster)) == before


def test_cli_prints_a_kubeconfig_stock_kubectl_accepts(kubectl: Kubectl, real_cluster: Settings) -> None:
    path = cli("cluster", "kubeconfig").stdout.strip()
    got = subprocess.run([str(kubectl.binary), f"--kubeconfig={path}", "get", "namespace", "default",
                          "-o", "name"], capture_output=True, text=True, check=True).stdout.strip()
    assert got == "namespace/default"


def test_status_json_names_every_component_and_its_endpoint(real_cluster: Settings) -> None:
    data = json.loads(cli("status", "--json").stdout)
    assert data["cluster"]["up"] is True
    assert data["cluster"]["mode"] == "real"
    assert data["cluster"]["nodes_ready"] == 1
    assert data["kubeconfig"] == str(lifecycle.layout_of(real_cluster).admin_kubeconfig)
    assert set(data["cluster"]["daemons"]) == set(lifecycle.daemons_for("real"))


def test_the_sample_service_runs_in_dev_and_names_its_pod(real_cluster: Settings, kubectl: Kubectl) -> None:
    deploy_sample_alone(real_cluster)
    urls = stack.sample_urls(real_cluster)
    assert urls
    for url in urls:
        body = httpx.get(url, timeout=5).json()
        assert body["service"] == "demo-web"
        assert body["env"] == "dev"
        assert url == f"http://{body['ip']}:8080/"
    pods = kubectl.get_json("pods", "-n", stack.SAMPLE_NAMESPACE, "-l", "bizcloud.io/service=demo-web")
    labels = pods["items"][0]["metadata"]["labels"]
    assert {k: labels[k] for k in ("bizcloud.io/env", "bizcloud.io/group")} == {
        "bizcloud.io/env": "dev", "bizcloud.io/group": "normal"}


def test_an_existing_cluster_is_used_through_its_kubeconfig(real_cluster: Settings, tmp_path: Path) -> None:
    """With BIZCLOUD_KUBECONFIG set, BizCloud starts nothing and reports that cluster instead."""
    env = {"BIZCLOUD_KUBECONFIG": str(lifecycle.layout_of(real_cluster).admin_kubeconfig),
           "BIZCLOUD_STATE_DIR": str(tmp_path / "unused")}
    data = json.loads(cli("status", "--json", env=env).stdout)
    assert data["cluster"]["mode"] == "external"
    assert data["cluster"]["up"] is True
    assert data["cluster"]["nodes_ready"] == 1
    assert data["demo-web"]["urls"] == stack.sample_urls(real_cluster)
    assert not (tmp_path / "unused").exists()


def test_down_stops_every_process_and_up_brings_the_node_back(real_cluster: Settings, kubectl: Kubectl,
                                                              namespace: str, demo: str) -> None:
    """Runs last in this module: it restarts the shared cluster."""
    layout = lifecycle.layout_of(real_cluster)
    daemons = {r.pid for r in lifecycle.running_daemons(layout).values()}
    pods = host.pids_under(cgroup_root(real_cluster))
    assert pods, "the demo pods should have processes under the node's cgroup root"

    stopped = lifecycle.down(real_cluster)

    assert set(stopped) == set(lifecycle.daemons_for("real"))
    assert not [pid for pid in daemons | pods if processes.alive(pid)]
    assert not host.processes_mentioning(str(layout.containerd_socket))
    assert not host.mounts_under(layout.root)
    bridge = subprocess.run(["ip", "link", "show", real_cluster.cni_bridge], capture_output=True, check=False)
    assert bridge.returncode != 0

    lifecycle.up(real_cluster, mode="real")
    assert is_ready(kubectl.get_json("node", real_cluster.node_name))
    wait_for(lambda: len(ready_pods(kubectl, namespace, demo)) == 2, timeout=120,
             what="the demo pods to run again after the restart")
