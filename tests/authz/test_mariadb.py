"""The local MariaDB pair: its option files, and a throwaway pair's whole life on ports of its own."""

from __future__ import annotations

import shutil
import socket
import stat
from pathlib import Path

import pymysql
import pytest

from bizcloud.authz import mariadb
from bizcloud.cluster import processes
from bizcloud.cluster.host import node_ip
from bizcloud.errors import PrerequisiteError
from bizcloud.identifiers import InvalidNameError

MASTER_PORT, REPLICA_PORT = 23161, 23171


def test_the_master_writes_a_row_binlog_and_the_replica_is_read_only() -> None:
    common = {"datadir": Path("/d"), "socket_path": Path("/s"), "pid_file": Path("/p"), "port": 1,
              "bind": ["127.0.0.1", "192.0.2.2"]}
    master = mariadb.server_cnf(**common, server_id=1, replica=False).splitlines()  # type: ignore[arg-type]
    replica = mariadb.server_cnf(**common, server_id=2, replica=True).splitlines()  # type: ignore[arg-type]
    for lines in (master, replica):
        assert {"skip-name-resolve", "bind-address=127.0.0.1,192.0.2.2", "[mariadbd]"} <= set(lines)
    assert {"server-id=1", "binlog_format=ROW", "log-bin=/d/mariadb-bin"} <= set(master)
    assert "read_only=1" not in master
    assert {"server-id=2", "read_only=1", "skip-log-bin"} <= set(replica)


def test_a_pair_starts_once_replicates_restarts_with_its_data_and_stops(tmp_path: Path) -> None:
    if shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None:
        pytest.skip("MariaDB is not installed (mariadbd): run `make setup`")
    pair = mariadb.start_pair(tmp_path, master_port=MASTER_PORT, replica_port=REPLICA_PORT)
    try:
        secrets = tmp_path / mariadb.SECRETS_FILE
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
        assert pair.admin_password not in repr(pair) and pair.admin_password in secrets.read_text()
        pids = mariadb.status(tmp_path)
        assert all(pids.values())
        # idempotent: the running servers and the password are reused
        assert mariadb.start_pair(tmp_path, master_port=MASTER_PORT, replica_port=REPLICA_PORT) == pair
        assert mariadb.status(tmp_path) == pids
        # pods reach the host on the node's address: the admin logs in there too
        on_node = pymysql.connect(host=node_ip(), port=MASTER_PORT, user=pair.admin_user,
                                  password=pair.admin_password, connect_timeout=5)
        with on_node as conn, conn.cursor() as cursor:
            cursor.execute("SELECT @@server_id, @@log_bin, @@binlog_format")
            assert cursor.fetchone() == (1, 1, "ROW")
        mariadb.create_database(pair, "shop", ["CREATE TABLE IF NOT EXISTS orders (id INT PRIMARY KEY)",
                                               "INSERT IGNORE INTO orders VALUES (7)"])
        with mariadb.connect(pair, replica=True) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT id FROM shop.orders")  # create_database waited for the replica
            assert cursor.fetchall() == ((7,),)
            cursor.execute("SELECT @@server_id, @@read_only")
            assert cursor.fetchone() == (2, 1)
        with pytest.raises(InvalidNameError):
            mariadb.create_database(pair, "shop`; DROP DATABASE mysql; --")

        assert mariadb.stop_pair(tmp_path)
        assert mariadb.status(tmp_path) == {mariadb.MASTER: None, mariadb.REPLICA: None}
        again = mariadb.start_pair(tmp_path, master_port=MASTER_PORT, replica_port=REPLICA_PORT)
        assert again == pair
        mariadb.create_database(pair, "shop", ["INSERT IGNORE INTO orders VALUES (8)"])
        with mariadb.connect(pair, replica=True) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT id FROM shop.orders ORDER BY id")
            assert cursor.fetchall() == ((7,), (8,))
    finally:
        mariadb.stop_pair(tmp_path)
    assert not mariadb.stop_pair(tmp_path)


def test_a_pair_that_cannot_start_leaves_no_server_running(tmp_path: Path) -> None:
    """A busy replica port (these test ports are in the ephemeral range) must not orphan the master."""
    if shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None:
        pytest.skip("MariaDB is not installed (mariadbd): run `make setup`")
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the last test's TIME_WAIT
        busy.bind(("127.0.0.1", REPLICA_PORT))
        busy.listen()
        with pytest.raises(PrerequisiteError, match=str(REPLICA_PORT)):
            mariadb.start_pair(tmp_path, master_port=MASTER_PORT, replica_port=REPLICA_PORT,
                               bind=["127.0.0.1"])
    assert mariadb.status(tmp_path) == {mariadb.MASTER: None, mariadb.REPLICA: None}
    assert processes.port_owner(MASTER_PORT) is None
