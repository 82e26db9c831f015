"""The MySQL executor's kept admin sessions, incremental read-back and batches, on real MariaDB.

One admin session per server is reused across converges (the same ``CONNECTION_ID()``), reopened
when the server killed it, closed when the admin credential changes and at shutdown; a stopped or
frozen server still fails the converge within the timeouts. An incremental converge reads back
only the accounts whose desired state changed, a full one repairs drift; a batch names the
statement that failed and runs none after it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from bizcloud.authz import mariadb, mysql_sessions
from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.authz.grants import Converged, Grant, Kind, TargetPlan
from bizcloud.authz.mariadb import MariaDbPair
from bizcloud.authz.mysql import MysqlExecutor, native_password_hash
from bizcloud.authz.mysql_sessions import Sql, StepError, run_batch
from bizcloud.configcenter.schema import Inventory, MysqlCluster, Server
from tests.authz.conftest import (
    ADMIN_REF,
    MASTER,
    MASTER_PORT,
    DictCredentials,
    admin_query,
    connect_as,
    grant,
    inventory,
)

POD_A, POD_B, POD_C = "127.0.0.31", "127.0.0.32", "127.0.0.33"
OWN_MASTER, OWN_REPLICA = 23164, 23174  # the throwaway pair the stop/freeze tests break


def plan(target: str, user: str, *grants: Grant) -> TargetPlan:
    return TargetPlan(Kind.MYSQL, target, frozenset(grants), frozenset({user}))


def admin_sessions(pair: MariaDbPair) -> set[int]:
    """The admin user's sessions on the master, but the one asking."""
    rows = admin_query(pair, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s "
                             "AND ID <> CONNECTION_ID()", (pair.admin_user,))
    return {int(str(row[0])) for row in rows}


def hosts(pair: MariaDbPair, user: str) -> set[str]:
    return {str(r[0]) for r in admin_query(pair, "SELECT Host FROM mysql.user WHERE User = %s", (user,))}


# --- one session per server, kept ------------------------------------------------------------------

async def test_one_admin_session_is_reused_across_converges(pair: MariaDbPair, executor: MysqlExecutor,
                                                            user: str) -> None:
    before = admin_sessions(pair)
    await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    kept = executor.sessions.session_id("127.0.0.1", MASTER_PORT)
    assert kept is not None and admin_sessions(pair) - before == {kept}
    for wanted in ((POD_A, POD_B), (POD_B,), (POD_B, POD_C), ()):
        await executor.converge(plan(MASTER, user, *(grant(user, ip) for ip in wanted)))
        assert hosts(pair, user) == set(wanted)
        assert executor.sessions.session_id("127.0.0.1", MASTER_PORT) == kept
        assert admin_sessions(pair) - before == {kept}  # the same CONNECTION_ID(), no other one opened
    assert executor.sessions.opened == 1
    executor.close()
    assert admin_sessions(pair) - before == set()  # closed at shutdown


async def test_a_session_the_server_killed_is_reopened_and_the_converge_succeeds(
        pair: MariaDbPair, executor: MysqlExecutor, credentials: DictCredentials, user: str) -> None:
    await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    killed = executor.sessions.session_id("127.0.0.1", MASTER_PORT)
    admin_query(pair, "KILL CONNECTION %s", (killed,))  # from another session, as an operator would
    result = await executor.converge(plan(MASTER, user, grant(user, POD_A), grant(user, POD_B)))
    assert result.added == (grant(user, POD_B),)
    reopened = executor.sessions.session_id("127.0.0.1", MASTER_PORT)
    assert reopened not in (None, killed) and executor.sessions.opened == 2
    connect_as(user, credentials.passwords[("demo-api", "dev", user)], POD_B).close()
    # the new session still keeps the master's account changes out of the binary log
    on_replica = admin_query(pair, "SELECT COUNT(*) FROM mysql.user WHERE User = %s", (user,), replica=True)
    assert on_replica[0][0] == 0


async def test_a_changed_admin_credential_closes_the_old_session(
        pair: MariaDbPair, credentials: DictCredentials, user: str) -> None:
    executor = MysqlExecutor(inventory, credentials)
    try:
        before = admin_sessions(pair)
        await executor.converge(plan(MASTER, user, grant(user, POD_A)))
        old = executor.sessions.session_id("127.0.0.1", MASTER_PORT)
        credentials.admin_credentials = (pair.admin_user, "rotated-but-not-yet-on-the-server")
        with pytest.raises(ExecutorUnavailableError, match="1045"):
            await executor.converge(plan(MASTER, user, grant(user, POD_B)))
        assert old not in admin_sessions(pair)  # closed, not left open with the old credential
        credentials.admin_credentials = (pair.admin_user, pair.admin_password)
        await executor.converge(plan(MASTER, user, grant(user, POD_B)))
        assert hosts(pair, user) == {POD_B}
        assert admin_sessions(pair) - before == {executor.sessions.session_id("127.0.0.1", MASTER_PORT)}
    finally:
        credentials.admin_credentials = (pair.admin_user, pair.admin_password)
        executor.close()


def test_close_waits_for_a_session_in_use_and_closes_it(pair: MariaDbPair) -> None:
    sessions = mysql_sessions.AdminSessions()
    before = admin_sessions(pair)
    lent, returned = threading.Event(), threading.Event()

    def converge() -> None:
        with sessions.session(host="127.0.0.1", port=MASTER_PORT, user=pair.admin_user,
                              password=pair.admin_password, ssl_disabled=True) as (conn, _):
            lent.set()
            time.sleep(0.3)
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
        returned.set()

    worker = threading.Thread(target=converge)
    worker.start()
    assert lent.wait(5)
    sessions.close()  # while the session is lent out
    assert returned.is_set()  # close waited for it to come back...
    worker.join()
    assert sessions.session_id("127.0.0.1", MASTER_PORT) is None
    assert admin_sessions(pair) - before == set()  # ...and closed it


# --- a server that stops or freezes -------------------------------------------------------------

@pytest.fixture
def own_pair(tmp_path: Path) -> Iterator[tuple[Path, MariaDbPair]]:
    """A pair of this test's own: it is stopped and frozen, which the shared pair must never be."""
    started = mariadb.start_pair(tmp_path, master_port=OWN_MASTER, replica_port=OWN_REPLICA,
                                 bind=["127.0.0.1"])
    mariadb.create_database(started, "demo", ["CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY)"])
    yield tmp_path, started
    for pid in mariadb.status(tmp_path).values():
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
    mariadb.stop_pair(tmp_path)


async def test_a_stopped_or_frozen_server_fails_the_converge_within_the_timeouts(
        own_pair: tuple[Path, MariaDbPair], user: str) -> None:
    directory, started = own_pair
    credentials = DictCredentials((started.admin_user, started.admin_password))
    credentials.passwords[("demo-api", "dev", user)] = "pod-password"
    own = Inventory(mysql={"main": MysqlCluster(master=Server(host="127.0.0.1", port=OWN_MASTER),
                                                admin=ADMIN_REF)})
    target = f"main/127.0.0.1:{OWN_MASTER}"
    executor = MysqlExecutor(lambda: own, credentials, connect_timeout=1, io_timeout=2)
    try:
        await executor.converge(plan(target, user, grant(user, POD_A, target)))
        pid = mariadb.status(directory)[mariadb.MASTER]
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # frozen: the kept session's ping gets no answer
        started_at = time.monotonic()
        with pytest.raises(ExecutorUnavailableError) as frozen:
            await executor.converge(plan(target, user, grant(user, POD_B, target)))
        assert time.monotonic() - started_at < 2 + 1 + 2  # ping's read timeout, then connect's
        assert target in frozen.value.one_line() and "pod-password" not in frozen.value.one_line()
        os.kill(pid, signal.SIGCONT)
        result = await executor.converge(plan(target, user, grant(user, POD_B, target)))
        assert {g.subject_ip for g in result.added} == {POD_B}, result  # reopened
        assert {g.subject_ip for g in result.removed} == {POD_A}, result
        assert executor.full_reads == 2 and executor.sessions.opened == 2  # a failure: a full read next

        mariadb.stop_pair(directory)  # stopped: refused at once
        started_at = time.monotonic()
        with pytest.raises(ExecutorUnavailableError, match=r"connecting to 127\.0\.0\.1"):
            await executor.converge(plan(target, user, grant(user, POD_A, target)))
        assert time.monotonic() - started_at < 1.5
    finally:
        executor.close()


# --- what is read back -----------------------------------------------------------------------------

async def test_an_incremental_converge_reads_only_what_changed_and_a_full_one_repairs_drift(
        pair: MariaDbPair, executor: MysqlExecutor, user: str) -> None:
    await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    assert executor.full_reads == 1  # the first converge of a target reads everything
    admin_query(pair, "GRANT DELETE ON `demo`.* TO %s@%s", (user, POD_A))  # drift on an unchanged account
    result = await executor.converge(plan(MASTER, user, grant(user, POD_A), grant(user, POD_B)))
    assert result == Converged(added=(grant(user, POD_B),))  # POD_A was not read back
    assert executor.full_reads == 1
    result = await executor.converge(plan(MASTER, user, grant(user, POD_A), grant(user, POD_B)),
                                     everything=True)
    assert result.added == (grant(user, POD_A),) and executor.full_reads == 2  # DELETE revoked
    assert "DELETE" not in str(admin_query(pair, "SHOW GRANTS FOR %s@%s", (user, POD_A)))
    # a plan that changed nothing is a check (the worker's resync): everything is read back too
    admin_query(pair, "GRANT DELETE ON `demo`.* TO %s@%s", (user, POD_B))
    result = await executor.converge(plan(MASTER, user, grant(user, POD_A), grant(user, POD_B)))
    assert result.added == (grant(user, POD_B),) and executor.full_reads == 3


async def test_full_every_bounds_how_long_drift_can_last(pair: MariaDbPair, credentials: DictCredentials,
                                                        user: str) -> None:
    executor = MysqlExecutor(inventory, credentials, full_every=0)
    try:
        await executor.converge(plan(MASTER, user, grant(user, POD_A)))
        admin_query(pair, "DROP USER %s@%s", (user, POD_A))
        result = await executor.converge(plan(MASTER, user, grant(user, POD_A), grant(user, POD_B)))
        assert result.added == (grant(user, POD_A), grant(user, POD_B)) and executor.full_reads == 2
    finally:
        executor.close()


@pytest.mark.parametrize("password", ["pw", "n3w'pass\\word\"; DROP USER x --", "päss wörd ✓", ""])
def test_the_password_hash_is_the_server_s(pair: MariaDbPair, password: str) -> None:
    assert admin_query(pair, "SELECT PASSWORD(%s)", (password,))[0][0] == (
        native_password_hash(password) if password else "")


# --- batches ---------------------------------------------------------------------------------------

@pytest.fixture
def multi(pair: MariaDbPair) -> Iterator[pymysql.cursors.Cursor]:
    sessions = mysql_sessions.AdminSessions()
    with sessions.session(host="127.0.0.1", port=MASTER_PORT, user=pair.admin_user,
                          password=pair.admin_password, ssl_disabled=True) as (conn, fresh), \
            conn.cursor() as cursor:
        assert fresh
        yield cursor
    sessions.close()


def test_a_batch_answers_each_statement_in_order_across_chunks(
        multi: pymysql.cursors.Cursor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mysql_sessions, "BATCH_BYTES", 64)  # a few statements per round trip
    statements = [Sql("SELECT %s, %s", (i, f"it's {i}")) for i in range(40)]
    assert run_batch(multi, statements) == [((i, f"it's {i}"),) for i in range(40)]


def test_a_failing_statement_is_named_and_none_after_it_runs(pair: MariaDbPair,
                                                            multi: pymysql.cursors.Cursor) -> None:
    name = f"b_{uuid.uuid4().hex[:10]}"
    with pytest.raises(StepError) as caught:
        run_batch(multi, [Sql("SELECT 1"), Sql("SELECT * FROM demo.nowhere", what="reading nowhere"),
                          Sql("CREATE USER %s@%s IDENTIFIED BY %s", (name, POD_C, "secret-pw"),
                              "CREATE USER")])
    assert caught.value.what == "reading nowhere" and isinstance(caught.value.__cause__, pymysql.MySQLError)
    assert hosts(pair, name) == set()
    assert run_batch(multi, [Sql("SELECT 2")]) == [((2,),)]  # the session is usable after the failure
