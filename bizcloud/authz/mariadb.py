"""The MariaDB master and replica BizCloud runs for the sample: Debian's ``mariadbd``, as daemons.

`make up` starts the pair like the cluster's own daemons: our config, data directory, socket,
pidfile and log under the state directory, never the system instance (which the package may run
on 3306 and which we leave alone). The master writes a ROW binary log with GTIDs; the replica is
``read_only`` and replicates from it with ``MASTER_USE_GTID=slave_pos``. Both use
``skip-name-resolve``, because every account the MySQL executor makes is pinned to a pod IP, and
both listen on loopback and on the node's address, which is where pods reach the host.

Each server gets the same admin account (all privileges, WITH GRANT OPTION) for loopback and the
node IP, made with ``sql_log_bin=0`` so the master's binary log holds nothing the replica would
replay twice. The generated passwords live in one 0600 file of the directory and nowhere else;
the caller copies the admin's into the Kubernetes Secret the inventory names. Tests and the
benchmark start throwaway pairs with the same functions on ports of their own.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pymysql

from bizcloud import identifiers
from bizcloud.authz.mysql import quote_identifier
from bizcloud.cluster import processes
from bizcloud.cluster.host import node_ip
from bizcloud.cluster.layout import Layout
from bizcloud.errors import BizCloudError, ClusterError, PrerequisiteError

ADMIN_USER = "bizcloud_admin"
REPLICATION_USER = "bizcloud_repl"
MASTER, REPLICA = "mariadb-master", "mariadb-replica"
SECRETS_FILE = "mariadb-secrets.json"
_INITIALISED = ".bizcloud-initialised"  # written in a datadir once its accounts exist


@dataclass(frozen=True)
class MariaDbPair:
    """What a caller needs: where both servers listen and the admin's credentials (a secret)."""

    host: str            # the address pods use (the node IP, or loopback when there is none)
    master_port: int
    replica_port: int
    admin_user: str
    admin_password: str

    def __repr__(self) -> str:  # the password never reaches a log line through a repr
        return (f"MariaDbPair(host={self.host!r}, master_port={self.master_port}, "
                f"replica_port={self.replica_port}, admin_user={self.admin_user!r})")


@dataclass(frozen=True)
class _Server:
    root: Path
    name: str
    port: int
    server_id: int

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def datadir(self) -> Path:
        return self.root / self.name

    @property
    def config_file(self) -> Path:
        return self.layout.config / f"{self.name}.cnf"

    @property
    def socket(self) -> Path:
        return self.layout.run / f"{self.name}.sock"

    @property
    def log(self) -> Path:
        return self.layout.log(self.name)


def server_cnf(*, datadir: Path, socket_path: Path, pid_file: Path, port: int, bind: Sequence[str],
               server_id: int, replica: bool) -> str:
    """One server's option file. Purely computational.

    Small buffers (a 2-core machine runs the whole platform), no performance schema, and
    ``skip-name-resolve``: hosts in accounts are IP literals, and a DNS lookup per connection
    would only add latency and a way to spoof a name.
    """
    lines = [
        "[mariadbd]",
        f"datadir={datadir}",
        f"socket={socket_path}",
        f"pid-file={pid_file}",
        f"port={port}",
        f"bind-address={','.join(bind)}",
        "skip-name-resolve",
        f"server-id={server_id}",
        "performance_schema=OFF",
        "innodb_buffer_pool_size=32M",
        "innodb_log_file_size=16M",
        "key_buffer_size=8M",
        "max_connections=300",
        "character-set-server=utf8mb4",
        "collation-server=utf8mb4_general_ci",
    ]
    if replica:
        lines += ["read_only=1", f"relay-log={datadir}/relay-bin", "skip-log-bin"]
    else:
        lines += [f"log-bin={datadir}/mariadb-bin", "binlog_format=ROW", "log-basename=bizcloud-master"]
    return "\n".join(lines) + "\n"


def _servers(directory: Path, master_port: int, replica_port: int) -> tuple[_Server, _Server]:
    return _Server(directory, MASTER, master_port, 1), _Server(directory, REPLICA, replica_port, 2)


def _os_user() -> str:
    return "root" if os.geteuid() == 0 else getpass.getuser()


def _answering(port: int) -> bool:
    """Whether a MySQL server greets on loopback ``port`` (its handshake packet arrives)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            return len(conn.recv(64)) > 4
    except OSError:
        return False


def _secrets(directory: Path) -> dict[str, str]:
    """The admin and replication passwords: read back, or generated once into a 0600 file."""
    path = directory / SECRETS_FILE
    if path.is_file():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = {"admin_password": secrets.token_urlsafe(24), "replication_password": secrets.token_urlsafe(24)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return data


def _literal(value: str) -> str:
    """A SQL string literal for the bootstrap scripts (same escaping as the executor's driver)."""
    return "'" + pymysql.converters.escape_string(value) + "'"


def _bootstrap_sql(*, hosts: Sequence[str], admin_password: str) -> str:
    """Accounts made over the socket before anyone can log in over TCP, kept out of the binlog."""
    statements = ["SET SESSION sql_log_bin=0;"]
    for host in dict.fromkeys(hosts):
        account = f"{_literal(ADMIN_USER)}@{_literal(host)}"
        statements += [f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {_literal(admin_password)};",
                       f"ALTER USER {account} IDENTIFIED BY {_literal(admin_password)};",
                       f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION;"]
    return "\n".join(statements) + "\n"


def _run_sql(server: _Server, sql: str) -> None:
    """Run ``sql`` through the client over the server's socket as the OS user (unix_socket auth).

    The script goes on stdin, so passwords in it never appear in a process list.
    """
    client = shutil.which("mariadb")
    if client is None:
        raise PrerequisiteError("the mariadb client is missing",
                                hint="run `make setup` (apt-get install mariadb-client)")
    done = subprocess.run([client, "--no-defaults", f"--socket={server.socket}", "-u", _os_user(), "--batch"],
                          input=sql, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        # The client echoes the failing statement's error, never the script: no secret in it.
        raise ClusterError(f"{server.name}: setup SQL failed: {done.stderr.strip()[:300]}",
                           hint=f"see {server.log}")


def _start_server(server: _Server, *, bind: Sequence[str], timeout: float) -> processes.Running:
    current = processes.read_pidfile(server.layout.pidfile(server.name))
    if current is not None:
        processes.wait_until(lambda: _answering(server.port), what=f"{server.name} did not answer",
                             timeout=timeout, log=server.log, pid=current.pid)
        return current
    mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
    install_db = shutil.which("mariadb-install-db")
    if mariadbd is None or install_db is None:
        raise PrerequisiteError("MariaDB is not installed (mariadbd, mariadb-install-db)",
                                hint="run `make setup` (apt-get install mariadb-server mariadb-client)")
    processes.require_free(server.port, what=server.name, setting=server.name.replace("-", "_") + "_port")
    for directory in (server.layout.logs, server.layout.run, server.layout.config):
        directory.mkdir(parents=True, exist_ok=True)
    server.config_file.write_text(server_cnf(
        datadir=server.datadir, socket_path=server.socket,
        pid_file=server.layout.run / f"{server.name}.server-pid",
        port=server.port, bind=bind, server_id=server.server_id, replica=server.server_id != 1))
    if not (server.datadir / _INITIALISED).is_file():
        shutil.rmtree(server.datadir, ignore_errors=True)  # a half-made datadir from a crash
        server.datadir.mkdir(parents=True)
        server.datadir.chmod(0o700)
        done = subprocess.run([install_db, f"--defaults-file={server.config_file}", f"--user={_os_user()}",
                               "--auth-root-authentication-method=socket", "--skip-test-db"],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ClusterError(f"{server.name}: mariadb-install-db failed: {done.stderr.strip()[-300:]}")
    running = processes.start(server.layout, server.name,
                              [mariadbd, f"--defaults-file={server.config_file}", f"--user={_os_user()}"])
    processes.wait_until(lambda: _answering(server.port) and server.socket.exists(),
                         what=f"{server.name} did not answer", timeout=timeout, log=server.log,
                         pid=running.pid)
    return running


def _replicating(replica: _Server) -> bool:
    done = subprocess.run(["mariadb", "--no-defaults", f"--socket={replica.socket}", "-u", _os_user(),
                           "-e", "SHOW SLAVE STATUS\\G"],
                          capture_output=True, text=True, timeout=10, check=False)
    return "Slave_IO_Running: Yes" in done.stdout and "Slave_SQL_Running: Yes" in done.stdout


def start_pair(directory: Path, *, master_port: int, replica_port: int, bind: Sequence[str] | None = None,
               timeout: float = 60.0) -> MariaDbPair:
    """Start the master and its replica unless ours already run; return once the replica replicates.

    ``bind`` defaults to loopback and the node's address (where pods reach the host). Safe to call
    again: running servers are reused, existing data and passwords are kept. A call that fails
    stops the servers it started itself (a busy replica port must not leave an orphan master).
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if bind is None:
        bind = ["127.0.0.1"]
        with contextlib.suppress(PrerequisiteError):
            bind.append(node_ip())
    bind = list(dict.fromkeys(bind))
    keys = _secrets(directory)
    master, replica = _servers(directory, master_port, replica_port)
    started: list[_Server] = []
    try:
        for server in (master, replica):
            if processes.read_pidfile(server.layout.pidfile(server.name)) is None:
                started.append(server)
            _start_server(server, bind=bind, timeout=timeout)
            _initialise(server, master=master, bind=bind, keys=keys)
        processes.wait_until(lambda: _replicating(replica), timeout=timeout, log=replica.log,
                             what="the MariaDB replica did not start replicating")
    except BaseException:
        for server in reversed(started):
            processes.stop(server.layout, server.name, timeout=30.0)
        raise
    return MariaDbPair(host=bind[-1], master_port=master_port, replica_port=replica_port,
                       admin_user=ADMIN_USER, admin_password=keys["admin_password"])


def _initialise(server: _Server, *, master: _Server, bind: Sequence[str], keys: dict[str, str]) -> None:
    """The accounts of a new server (once per data directory); the replica also starts replicating."""
    marker = server.datadir / _INITIALISED
    if marker.is_file():
        return
    sql = _bootstrap_sql(hosts=bind, admin_password=keys["admin_password"])
    if server is master:
        repl = f"{_literal(REPLICATION_USER)}@{_literal('127.0.0.1')}"
        sql += (f"SET SESSION sql_log_bin=0;\nCREATE USER IF NOT EXISTS {repl} IDENTIFIED BY "
                f"{_literal(keys['replication_password'])};\nGRANT REPLICATION SLAVE ON *.* TO {repl};\n")
    else:
        sql += (f"STOP SLAVE;\nCHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={int(master.port)}, "
                f"MASTER_USER={_literal(REPLICATION_USER)}, "
                f"MASTER_PASSWORD={_literal(keys['replication_password'])}, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;\nSTART SLAVE;\n")
    _run_sql(server, sql)
    marker.write_text("accounts made\n")


def stop_pair(directory: Path, *, timeout: float = 30.0) -> bool:
    """Stop both servers if they run (the replica first); True if something was stopped."""
    layout = Layout(directory.resolve())
    stopped = [processes.stop(layout, name, timeout=timeout) for name in (REPLICA, MASTER)]
    return any(stopped)


def status(directory: Path) -> dict[str, int | None]:
    """Each server's pid, or None when it is not running."""
    layout = Layout(directory.resolve())
    result: dict[str, int | None] = {}
    for name in (MASTER, REPLICA):
        running = processes.read_pidfile(layout.pidfile(name))
        result[name] = running.pid if running else None
    return result


def connect(pair: MariaDbPair, *, replica: bool = False, database: str | None = None) -> pymysql.Connection:
    """An admin session on loopback (BizCloud's own processes run on the host)."""
    return pymysql.connect(host="127.0.0.1", port=pair.replica_port if replica else pair.master_port,
                           user=pair.admin_user, password=pair.admin_password, database=database,
                           connect_timeout=5, read_timeout=30, write_timeout=30, autocommit=True)


def create_database(pair: MariaDbPair, name: str, setup_sql: Sequence[str] = (), *,
                    timeout: float = 30.0) -> None:
    """Create database ``name`` on the master, run ``setup_sql`` in it, and wait for the replica.

    Idempotent when ``setup_sql`` is (``CREATE TABLE IF NOT EXISTS`` …). Returns once the replica
    has applied the master's binlog up to here (``MASTER_GTID_WAIT``), so a reader of the
    replica sees the schema at once.
    """
    name = identifiers.mysql_database(name, "database")
    with connect(pair) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(name)}")
        cursor.execute(f"USE {quote_identifier(name)}")
        for statement in setup_sql:
            cursor.execute(statement)
        cursor.execute("SELECT @@GLOBAL.gtid_binlog_pos")
        row = cursor.fetchone()
        position = str(row[0]) if row else ""
    with connect(pair, replica=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
        row = cursor.fetchone()
        if not row or row[0] != 0:
            raise BizCloudError(f"the MariaDB replica did not reach the master's position {position} "
                                f"in {timeout:.0f}s", hint="check `SHOW SLAVE STATUS` on the replica")
