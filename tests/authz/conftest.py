"""A real MariaDB master + replica for the authz tests, on test ports with their own files.

The pod IPs are loopback aliases (127.0.0.11, 127.0.0.12 …): Linux routes all of 127/8 to
``lo``, so a client bound to one of them reaches the servers on 127.0.0.1 from that address,
which is what the accounts are pinned to.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from bizcloud.authz import mariadb
from bizcloud.authz.grants import Grant, Kind, MysqlAccess
from bizcloud.authz.mariadb import MariaDbPair
from bizcloud.authz.mysql import MysqlExecutor
from bizcloud.configcenter.schema import Inventory, MysqlCluster, SecretRef, Server

MASTER_PORT, REPLICA_PORT = 23160, 23170  # below the ephemeral range (32768+): no client socket can hold them
ADMIN_REF = SecretRef(namespace="bizcloud-system", name="mariadb-admin")
MASTER = f"main/127.0.0.1:{MASTER_PORT}"
REPLICA = f"main/127.0.0.1:{REPLICA_PORT}"


class DictCredentials:
    """Test double of the Kubernetes-Secret-backed credentials: passwords in a dict; counts calls."""

    def __init__(self, admin: tuple[str, str]) -> None:
        self.admin_credentials = admin
        self.passwords: dict[tuple[str, str, str], str] = {}
        self.calls = 0

    async def admin(self, ref: SecretRef) -> tuple[str, str]:
        self.calls += 1
        assert ref == ADMIN_REF
        return self.admin_credentials

    async def password(self, service: str, env: str, user: str) -> str:
        self.calls += 1
        return self.passwords[(service, env, user)]


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDbPair]:
    if shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/usr/local/sbin") is None:
        pytest.skip("MariaDB is not installed (mariadbd): run `make setup`")
    directory = Path(tmp_path_factory.mktemp("mariadb"))
    started = mariadb.start_pair(directory, master_port=MASTER_PORT, replica_port=REPLICA_PORT)
    mariadb.create_database(started, "demo", [
        "CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name VARCHAR(40))",
        "INSERT IGNORE INTO items VALUES (1, 'one')",
    ])
    mariadb.create_database(started, "other", ["CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY)"])
    yield started
    mariadb.stop_pair(directory)


def inventory() -> Inventory:
    return Inventory(mysql={"main": MysqlCluster(
        master=Server(host="127.0.0.1", port=MASTER_PORT),
        slaves=(Server(host="127.0.0.1", port=REPLICA_PORT),),
        admin=ADMIN_REF)})


@pytest.fixture
def credentials(pair: MariaDbPair) -> DictCredentials:
    return DictCredentials((pair.admin_user, pair.admin_password))


@pytest.fixture
def executor(credentials: DictCredentials) -> Iterator[MysqlExecutor]:
    executor = MysqlExecutor(inventory, credentials)
    yield executor
    executor.close()  # its kept admin sessions


@pytest.fixture
def user(credentials: DictCredentials) -> str:
    """A fresh MySQL user per test (tests share the servers), with its password in the credentials."""
    name = f"u_{uuid.uuid4().hex[:10]}"
    credentials.passwords[("demo-api", "dev", name)] = f"pw-{uuid.uuid4().hex}"
    return name


def grant(user: str, ip: str, target: str = MASTER, *, database: str = "demo",
          privileges: tuple[str, ...] = ("SELECT",), service: str = "demo-api", env: str = "dev") -> Grant:
    return Grant(Kind.MYSQL, ip, target, MysqlAccess(user, database, privileges, service, env))


def connect_as(user: str, password: str, ip: str, port: int = MASTER_PORT,
               database: str | None = "demo") -> pymysql.Connection:
    """A client session from ``ip`` (a loopback alias), as a pod with that IP would open one."""
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database=database,
                           bind_address=ip, connect_timeout=5, read_timeout=10, autocommit=True)


def admin_query(pair: MariaDbPair, sql: str, params: tuple[object, ...] = (), *,
                replica: bool = False) -> tuple[tuple[object, ...], ...]:
    with mariadb.connect(pair, replica=replica) as conn, conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_bin=0")
        cursor.execute(sql, params)
        return tuple(cursor.fetchall())
