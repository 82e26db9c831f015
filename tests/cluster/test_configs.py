"""Daemon configuration as values: every flag the local cluster depends on, checked in one place."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import pytest

from bizcloud.cluster import configs
from bizcloud.cluster.layout import Layout
from bizcloud.settings import Settings


@pytest.fixture
def params(tmp_path: Path) -> configs.ClusterParams:
    settings = Settings(state_dir=tmp_path / "state", apiserver_port=16443, pod_cidr="10.77.0.0/16")
    layout = Layout(tmp_path / "state")
    binaries = {n: Path(f"/opt/bin/{n}") for n in
                ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kwok")}
    return configs.ClusterParams(settings=settings, layout=layout, node_ip="192.0.2.7", bin=binaries)


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)


def test_kubeconfig_embeds_credentials_and_selects_its_context() -> None:
    doc = configs.kubeconfig(cluster="c", server="https://127.0.0.1:6443", ca_pem=b"CA", user="admin",
                             cert_pem=b"CERT", key_pem=b"KEY")
    assert doc["current-context"] == "c"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == b"CA"
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY"


def test_service_ip_is_the_first_host_of_the_service_range(params: configs.ClusterParams) -> None:
    assert params.service_ip == "10.96.0.1"


def test_containerd_uses_its_own_socket_and_the_local_pause_image(params: configs.ClusterParams) -> None:
    conf = tomllib.loads(configs.containerd_toml(params))
    assert conf["version"] == 2
    assert conf["grpc"]["address"] == str(params.layout.containerd_socket)
    assert conf["root"].startswith(str(params.layout.root))
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == configs.PAUSE_IMAGE
    assert cri["cni"]["conf_dir"] == str(params.layout.cni_conf_dir)
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False


def test_cni_bridge_hands_out_pod_cidr_addresses(params: configs.ClusterParams) -> None:
    conf = configs.cni_conflist(params)
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["isGateway"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.77.0.0/16"}]]
    json.dumps(conf)  # containerd reads it as JSON


def test_kubelet_fits_a_cgroup_v1_host_and_keeps_local_images(params: configs.ClusterParams) -> None:
    conf = configs.kubelet_config(params)
    assert conf["cgroupDriver"] == "cgroupfs"
    assert conf["failSwapOn"] is False
    assert conf["failCgroupV1"] is False
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["imageGCHighThresholdPercent"] == 100
    assert conf["containerRuntimeEndpoint"] == f"unix://{params.layout.containerd_socket}"


def test_apiserver_flags(params: configs.ClusterParams) -> None:
    flags = _flags(configs.apiserver_argv(params))
    assert flags["secure-port"] == "16443"
    assert flags["advertise-address"] == "192.0.2.7"
    assert flags["authorization-mode"] == "Node,RBAC"
    assert flags["anonymous-auth"] == "false"
    assert flags["etcd-servers"] == params.etcd_url
    assert flags["service-account-signing-key-file"].endswith("sa.key")


@pytest.mark.parametrize("build", [configs.controller_manager_argv, configs.scheduler_argv])
def test_components_authenticate_with_their_own_kubeconfig(params: configs.ClusterParams, build: object
                                                            ) -> None:
    argv = build(params)  # type: ignore[operator]
    flags = _flags(argv)
    assert flags["kubeconfig"] == flags["authentication-kubeconfig"] == flags["authorization-kubeconfig"]
    assert flags["bind-address"] == "127.0.0.1"


def test_kwok_manages_only_annotated_nodes(params: configs.ClusterParams) -> None:
    flags = _flags(configs.kwok_argv(params))
    assert flags["manage-all-nodes"] == "false"
    assert flags["manage-nodes-with-annotation-selector"] == f"{configs.KWOK_NODE_ANNOTATION}=fake"
    nodes = configs.kwok_nodes(3)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["kwok-node-0", "kwok-node-1", "kwok-node-2"]
    assert all(n["metadata"]["annotations"][configs.KWOK_NODE_ANNOTATION] == "fake" for n in nodes)
