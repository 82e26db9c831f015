"""Configuration of every daemon of the local cluster: files and command lines, as pure values.

Nothing here touches the disk or starts a process; `lifecycle` writes what these return and
starts what they describe. That keeps every flag in one reviewable place with unit tests.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bizcloud.cluster.layout import Layout
from bizcloud.settings import Settings

PAUSE_IMAGE = "bizcloud.local/pause:3.10"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def cgroup_root(settings: Settings) -> str:
    """The cgroup every pod process of this cluster's node lives under, named after the cluster
    so `down` can sweep it without touching another cluster's pods on the same host."""
    return f"/{settings.cluster_name}"


@dataclass(frozen=True)
class ClusterParams:
    """What varies between clusters: the settings plus what `up` found about the host."""

    settings: Settings
    layout: Layout
    node_ip: str
    bin: dict[str, Path]

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.etcd_port}"

    @property
    def service_ip(self) -> str:
        """The first address of the service range: the `kubernetes` Service's ClusterIP."""
        return str(next(ipaddress.ip_network(self.settings.service_cidr).hosts()))


def kubeconfig(*, cluster: str, server: str, ca_pem: bytes, user: str, cert_pem: bytes,
               key_pem: bytes) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded) that stock kubectl accepts."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster,
                      "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem),
                                          "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }


def containerd_toml(p: ClusterParams) -> str:
    """containerd 1.6 (config version 2) with the CRI plugin, our CNI config and local pause image.

    The socket, root and state are ours alone so a Docker Engine or another containerd on the
    host is never touched; pod network namespaces live under our state directory too.
    ``sandbox_image`` names the locally built pause image so nothing is pulled.
    ``restrict_oom_score_adj``: sandboxed hosts may refuse negative OOM scores even to root, and
    runc then fails every pod with "can't get final child's PID from pipe"; restricting clamps
    the scores kubelet asks for to containerd's own, which always works.
    """
    lay = p.layout
    return f"""version = 2
root = "{lay.containerd_root}"
state = "{lay.containerd_state}"

[grpc]
  address = "{lay.containerd_socket}"

[ttrpc]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_selinux = false
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{lay.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_conflist(p: ClusterParams) -> dict[str, Any]:
    """A bridge network: each pod gets an address of ``pod_cidr`` reachable from the host.

    No masquerading: BizCloud grants database and firewall access per pod IP, so a pod's own
    address must be what its peers see; it also saves every pod start a round of iptables.
    """
    s = p.settings
    return {
        "cniVersion": "0.4.0",
        "name": "bizcloud",
        "plugins": [
            {
                "type": "bridge",
                "bridge": s.cni_bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": s.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(p.layout.cni_state_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(p: ClusterParams) -> dict[str, Any]:
    """KubeletConfiguration for one node on a cgroup-v1 host without swap accounting.

    Image garbage collection is off because our images cannot be pulled again once deleted;
    eviction thresholds are low because the node shares its disk with everything else.
    """
    s, pki = p.settings, p.layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "port": s.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": s.kubelet_healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root(s),
        "failSwapOn": False,
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{p.layout.containerd_socket}",
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "87600h",
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "maxPods": 250,
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "oomScoreAdj": 0,
    }


def etcd_argv(p: ClusterParams) -> list[str]:
    s = p.settings
    peer = f"http://127.0.0.1:{s.etcd_peer_port}"
    return [
        str(p.bin["etcd"]),
        f"--name={s.cluster_name}",
        f"--data-dir={p.layout.etcd_data}",
        f"--listen-client-urls={p.etcd_url}",
        f"--advertise-client-urls={p.etcd_url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={s.cluster_name}={peer}",
        "--log-level=warn",
    ]


def apiserver_argv(p: ClusterParams) -> list[str]:
    s, pki = p.settings, p.layout.pki
    return [
        str(p.bin["kube-apiserver"]),
        f"--etcd-servers={p.etcd_url}",
        "--bind-address=0.0.0.0",
        f"--advertise-address={p.node_ip}",
        f"--secure-port={s.apiserver_port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--anonymous-auth=false",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={s.service_cidr}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


def _component_common(p: ClusterParams, user: str, port: int) -> list[str]:
    kubeconfig_path = p.layout.kubeconfig_for(user)
    return [
        f"--kubeconfig={kubeconfig_path}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={p.layout.run / user}",
        "--leader-elect=false",
        # Client-side rate limits sized for a local cluster that must create thousands of pods
        # in kwok mode quickly; the defaults (20 qps) are for shared production API servers.
        "--kube-api-qps=300",
        "--kube-api-burst=500",
        "--v=1",
    ]


def controller_manager_argv(p: ClusterParams) -> list[str]:
    pki = p.layout.pki
    return [
        str(p.bin["kube-controller-manager"]),
        *_component_common(p, "controller-manager", p.settings.controller_manager_port),
        f"--cluster-name={p.settings.cluster_name}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={p.settings.service_cidr}",
        "--use-service-account-credentials=true",
        "--allocate-node-cidrs=false",
        "--node-monitor-grace-period=20s",
    ]


def scheduler_argv(p: ClusterParams) -> list[str]:
    return [str(p.bin["kube-scheduler"]),
            *_component_common(p, "scheduler", p.settings.scheduler_port)]


def kubelet_argv(p: ClusterParams) -> list[str]:
    return [
        str(p.bin["kubelet"]),
        f"--config={p.layout.config / 'kubelet.yaml'}",
        f"--kubeconfig={p.layout.kubeconfig_for('kubelet')}",
        f"--hostname-override={p.settings.node_name}",
        f"--node-ip={p.node_ip}",
        f"--root-dir={p.layout.kubelet_root}",
        f"--cert-dir={p.layout.run / 'kubelet'}",
        "--v=1",
    ]


def containerd_argv(p: ClusterParams) -> list[str]:
    return ["containerd", f"--config={p.layout.config / 'containerd.toml'}"]


def kwok_argv(p: ClusterParams) -> list[str]:
    s = p.settings
    return [
        str(p.bin["kwok"]),
        f"--kubeconfig={p.layout.kubeconfig_for('kwok')}",
        f"--config={p.bin['kwok'].parent / 'stages.yaml'}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--node-ip={p.node_ip}",
        "--cidr=10.90.0.1/16",
        f"--server-address=127.0.0.1:{s.kwok_port}",
        "--node-lease-duration-seconds=40",
    ]


def kwok_nodes(count: int) -> dict[str, Any]:
    """N simulated nodes, annotated so kwok (and only kwok) manages them. Purely computational."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{i}",
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": f"kwok-node-{i}",
                           "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
            },
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        }
        for i in range(count)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
