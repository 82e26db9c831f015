"""The one settings object. Every default is the embedded one that `make up` runs on.

Values come from the environment with the prefix ``BIZCLOUD_`` (``BIZCLOUD_STATE_DIR``,
``BIZCLOUD_APISERVER_PORT`` ...), so tests and scripts can run a second cluster beside the first
by moving its state directory and ports, without any code knowing about it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ClusterMode = Literal["real", "kwok"]


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "bizcloud"


class Settings(BaseSettings):
    """BizCloud configuration; see the README for what each group is for."""

    model_config = SettingsConfigDict(env_prefix="BIZCLOUD_", extra="ignore")

    # Where things live. The cache outlives working copies (Go builds take many minutes); the
    # state directory belongs to one working copy and holds everything a running cluster owns.
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    state_dir: Path = Path(".bizcloud")

    # Local cluster.
    cluster_name: str = "bizcloud"
    node_name: str = "bizcloud-node"
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    apiserver_port: int = 6443
    controller_manager_port: int = 10257
    scheduler_port: int = 10259
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248
    kwok_port: int = 10247
    service_cidr: str = "10.96.0.0/16"
    pod_cidr: str = "10.88.0.0/16"
    cni_bridge: str = "bizcloud0"
    kwok_nodes: int = 1
    up_timeout_s: float = Field(default=180.0, gt=0)

    # An existing cluster instead of the local one: BizCloud then starts no cluster of its own
    # and deploys the sample service with ``sample_image``, which that cluster must be able to pull.
    kubeconfig: Path | None = None
    sample_image: str = "demo:v1"

    # Service management center (catalog) and its API. SQLite in the state directory by default;
    # PostgreSQL or MySQL by URL (postgresql+psycopg://…, mysql+pymysql://…).
    database_url: str | None = None
    server_host: str = "127.0.0.1"
    server_port: int = 8700
    # The change stream's wake-up: after each commit the monitor sends a UDP datagram to every
    # ``host:port`` here (unset: the server's host and port — UDP beside its TCP; "off": none), and
    # the server answers its long-polls at once. Its look at the database every ``catalog_poll_s``
    # stays as the fallback (a lost datagram, a monitor on another host that sends none).
    catalog_wakeup: str | None = None
    catalog_poll_s: float = Field(default=0.05, gt=0)

    # Console and WebShell: the keepalive of idle shells (WebSocket pings to the browser, a no-op
    # resize on the exec stream), and the environments where developers may not deploy or shell.
    shell_keepalive_s: float = Field(default=20.0, gt=0)
    # A shell whose client stops keeping up is closed, saying why in the terminal, the close frame
    # and the audit trail: when one send to it has waited shell_stall_s (unset: three keepalives,
    # at least 10 s), or when it leaves a ping unanswered for shell_ping_timeout_s (unset: the
    # larger of 20 s and the keepalive), whichever comes first.
    shell_stall_s: float | None = Field(default=None, gt=0)
    shell_ping_timeout_s: float | None = Field(default=None, gt=0)
    production_envs: str = "prod,production"

    # k8s-monitor.
    monitor_metrics_port: int = 8701
    monitor_resync_s: float = Field(default=30.0, gt=0)
    monitor_grace_s: float = Field(default=5.0, ge=0)
    monitor_watch_timeout_s: int = Field(default=300, ge=10)
    monitor_lease_namespace: str = "bizcloud-system"
    monitor_lease_name: str = "bizcloud-monitor"
    monitor_lease_duration_s: float = Field(default=15.0, gt=0)

    # Access-layer gateway: nginx + Lua. Users' traffic enters on ``gateway_port``; the syncer
    # pushes upstream sets to ``gateway_admin_port`` (loopback only), which also serves /metrics.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8780
    gateway_admin_port: int = 8781
    # The monitor also pushes what it commits straight into the gateways' nginx (``gateway/direct.py``),
    # ahead of the change stream their syncers follow: to the admin port at every ``host:port`` here
    # (unset: 127.0.0.1 and ``gateway_admin_port``; "off": none, the gateways follow the stream alone).
    gateway_feed: str | None = None

    # SOA registry: ZooKeeper (Debian's, started by BizCloud unless ``zookeeper_hosts`` names one).
    zookeeper_hosts: str | None = None
    zookeeper_port: int = 2181

    # Automatic authorization: the MariaDB master and replica `make up` starts for the sample (its
    # admin credentials go to the Secret ``bizcloud-system/mariadb-admin``, never to a file in the
    # repository), and how long a failing grant is retried between attempts at most.
    mariadb_master_port: int = 3316
    mariadb_replica_port: int = 3317
    authz_retry_max_s: float = Field(default=5.0, gt=0)
    # Deployed pods carry the readiness gate ``bizcloud.io/authorized``: Ready only once the monitor
    # has put their grants in place. Turn off for a cluster whose pods no BizCloud monitor watches.
    release_authorized_gate: bool = True

    # Local images: the sample application and the images the cluster needs are built here.
    docker_host: str = "unix:///var/run/docker.sock"
    # The Debian mirror the Python base image is bootstrapped from; None: the one this host's apt uses.
    debian_mirror: str | None = None

    def resolved_state_dir(self) -> Path:
        """The state directory as an absolute path (daemons are started from other cwds)."""
        return self.state_dir.expanduser().resolve()

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_state_dir() / 'catalog.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
