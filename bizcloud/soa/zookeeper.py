"""The ZooKeeper server BizCloud runs for the SOA registry: Debian's, as a daemon of the state directory.

`make up` starts it like the cluster's own daemons: our ``zoo.cfg``, data directory, log and
pidfile under the state directory, bound to loopback on ``zookeeper_port``, admin server off,
never the system service. With ``BIZCLOUD_ZOOKEEPER_HOSTS`` set, BizCloud uses that ensemble and
starts nothing. Tests start throwaway servers with the same functions on ports of their own.
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bizcloud.cluster import processes
from bizcloud.cluster.host import node_ip
from bizcloud.cluster.layout import Layout
from bizcloud.errors import PrerequisiteError
from bizcloud.settings import Settings

NAME = "zookeeper"
JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"


@dataclass(frozen=True)
class ZooKeeperServer:
    """One standalone server: where its files live and where it listens."""

    root: Path
    port: int
    host: str = "127.0.0.1"
    name: str = NAME

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def config_file(self) -> Path:
        return self.root / "config" / f"{self.name}.cfg"

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.layout.log(self.name)


def zoo_cfg(*, data_dir: Path, host: str, port: int) -> str:
    """A standalone server's configuration. Purely computational.

    The admin server (Jetty on 8080 by default) is off: it would collide with anything else on
    the host and BizCloud does not use it. ``ruok``/``srvr``/``mntr`` stay for health checks.
    """
    return "\n".join([
        "tickTime=2000",
        "initLimit=10",
        "syncLimit=5",
        f"dataDir={data_dir}",
        f"clientPort={port}",
        f"clientPortAddress={host}",
        "maxClientCnxns=0",
        "admin.enableServer=false",
        "4lw.commands.whitelist=ruok,srvr,mntr",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=1",
        "",
    ])


def command(server: ZooKeeperServer) -> list[str]:
    java = shutil.which("java")
    if java is None or not Path(JARS[0]).is_file():
        raise PrerequisiteError("ZooKeeper needs Java and Debian's zookeeper package",
                                hint="run `make setup` (it installs zookeeper and its JDK)")
    classpath = ":".join(jar for jar in JARS if Path(jar).is_file())
    return [java, "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-Dzookeeper.jmx.log4j.disable=true",
            "-cp", classpath, MAIN, str(server.config_file)]


def four_letter(host: str, port: int, word: str, *, timeout: float = 2.0) -> str | None:
    """ZooKeeper's four-letter command answer, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(word.encode())
            chunks = []
            while chunk := conn.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def healthy(host: str, port: int) -> bool:
    return four_letter(host, port, "ruok") == "imok"


def running(server: ZooKeeperServer) -> processes.Running | None:
    return processes.read_pidfile(server.layout.pidfile(server.name))


def start(server: ZooKeeperServer, *, timeout: float = 60.0) -> processes.Running:
    """Start the server unless ours already runs; return once it answers ``ruok``."""
    current = running(server)
    if current is None:
        # Connections of a server stopped a moment ago may hold the port for a few seconds
        # (orphaned sockets closing), which a quick restart must wait out, not refuse.
        deadline = time.monotonic() + 10
        while processes.port_owner(server.port) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        processes.require_free(server.port, what="ZooKeeper", setting="zookeeper_port")
        for directory in (server.layout.logs, server.layout.run, server.config_file.parent, server.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        server.config_file.write_text(zoo_cfg(data_dir=server.data_dir, host=server.host, port=server.port))
        current = processes.start(server.layout, server.name, command(server))
    processes.wait_until(lambda: healthy(server.host, server.port), what="ZooKeeper did not answer ruok",
                         timeout=timeout, log=server.log, pid=current.pid)
    return current


def stop(server: ZooKeeperServer) -> bool:
    return processes.stop(server.layout, server.name)


def local_server(settings: Settings) -> ZooKeeperServer:
    """The ZooKeeper `make up` runs, on the node's address: pods reach the host there (their
    ``status.hostIP``), which loopback would not give them; BizCloud's own clients use it too."""
    return ZooKeeperServer(root=settings.resolved_state_dir(), port=settings.zookeeper_port,
                           host=node_ip())


def resolve_hosts(settings: Settings) -> str | None:
    """The ensemble to use: ``zookeeper_hosts``, else the local server if it runs, else None."""
    if settings.zookeeper_hosts:
        return settings.zookeeper_hosts
    server = local_server(settings)
    return server.hosts if running(server) is not None else None
