"""A real ZooKeeper (Debian's) for the SOA tests, started on a test port with its own files."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from bizcloud.soa import zookeeper
from bizcloud.soa.zookeeper import ZooKeeperServer

PORT = 22182


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(root=Path(tmp_path_factory.mktemp("zk")), port=PORT)
    if shutil.which("java") is None or not Path(zookeeper.JARS[0]).is_file():
        pytest.skip("Debian's zookeeper package (and its JDK) is not installed: run `make setup`")
    zookeeper.start(server)
    yield server
    zookeeper.stop(server)


@pytest.fixture
def zk(zk_server: ZooKeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def interface() -> str:
    """A fresh interface name per test, so tests sharing the server never see each other."""
    return f"com.example.t{uuid.uuid4().hex[:8]}.DemoApi"
