"""Where a local cluster keeps its state: every path under one directory, named once.

Everything `cluster up` creates lives under the state directory (default ``.bizcloud/`` in the
working copy), so `down --purge` is one `rm -rf` and two working copies never share a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfigs(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfigs / "admin.yaml"

    def kubeconfig_for(self, user: str) -> Path:
        return self.kubeconfigs / f"{user}.yaml"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_state_dir(self) -> Path:
        return self.root / "cni" / "state"

    def log(self, daemon: str) -> Path:
        return self.logs / f"{daemon}.log"

    def pidfile(self, daemon: str) -> Path:
        return self.run / f"{daemon}.pid"

    def create(self) -> None:
        for directory in (self.pki, self.kubeconfigs, self.config, self.logs, self.run, self.etcd_data,
                          self.cni_conf_dir, self.cni_state_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.etcd_data.chmod(0o700)
