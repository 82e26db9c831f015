"""The MySQL executor against a real MariaDB master + replica: pinning, exact privileges, revoke.

Each test has its own MySQL user; pod IPs are loopback aliases (see conftest).
"""

from __future__ import annotations

import logging
from typing import Any

import pymysql
import pytest

from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.authz.grants import Converged, Grant, Kind, MysqlAccess, TargetPlan
from bizcloud.authz.mariadb import MariaDbPair
from bizcloud.authz.mysql import Actual, Desired, MysqlExecutor, MysqlTargetError, plan_changes
from bizcloud.configcenter.schema import Inventory, MysqlCluster, Server
from bizcloud.identifiers import InvalidNameError
from tests.authz.conftest import (
    ADMIN_REF,
    MASTER,
    REPLICA,
    REPLICA_PORT,
    DictCredentials,
    admin_query,
    connect_as,
    grant,
)

POD_A, POD_B = "127.0.0.11", "127.0.0.12"
# wrong password / no account for this host / refused by the authentication plugin (MariaDB answers
# 1698 when the account was dropped while the handshake was under way)
ACCESS_DENIED = (1045, 1130, 1698)


def plan(target: str, user: str, *grants: Grant) -> TargetPlan:
    return TargetPlan(Kind.MYSQL, target, frozenset(grants), frozenset({user}))


def password(credentials: DictCredentials, user: str) -> str:
    return credentials.passwords[("demo-api", "dev", user)]


def refused(user: str, pw: str, ip: str, port: int = 23160) -> int:
    with pytest.raises(pymysql.err.OperationalError) as caught:
        connect_as(user, pw, ip, port).close()
    return int(caught.value.args[0])


def grants_of(pair: MariaDbPair, user: str, ip: str, *, replica: bool = False) -> set[str]:
    rows = admin_query(pair, "SHOW GRANTS FOR %s@%s", (user, ip), replica=replica)
    return {str(row[0]).split(" IDENTIFIED BY")[0] for row in rows}


def accounts(pair: MariaDbPair, user: str, *, replica: bool = False) -> set[str]:
    rows = admin_query(pair, "SELECT Host FROM mysql.user WHERE User = %s", (user,), replica=replica)
    return {str(row[0]) for row in rows}


# --- pinning and exact privileges -----------------------------------------------------------------

async def test_a_granted_ip_connects_on_master_and_replica_and_does_exactly_what_was_granted(
        pair: MariaDbPair, executor: MysqlExecutor, credentials: DictCredentials, user: str) -> None:
    pw = password(credentials, user)
    for target in (MASTER, REPLICA):
        result = await executor.converge(plan(target, user, grant(user, POD_A, target)))
        assert result.added == (grant(user, POD_A, target),) and result.removed == ()
    for port in (23160, REPLICA_PORT):
        with connect_as(user, pw, POD_A, port) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT name FROM items WHERE id = 1")
            assert cursor.fetchone() == ("one",)
            for statement in ("INSERT INTO items VALUES (2, 'two')", "DROP TABLE items",
                              "SELECT * FROM other.t"):
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    cursor.execute(statement)
                # command denied (on the replica, read_only may refuse a write first)
                allowed = (1142, 1044, *((1290,) if port == REPLICA_PORT else ()))
                assert caught.value.args[0] in allowed, statement
        # the same user and password from another IP is refused: the account is pinned
        assert refused(user, pw, POD_B, port) in ACCESS_DENIED
    assert accounts(pair, user) == {POD_A} and accounts(pair, user, replica=True) == {POD_A}


async def test_converging_twice_changes_nothing(executor: MysqlExecutor, user: str) -> None:
    wanted = plan(MASTER, user, grant(user, POD_A, privileges=("INSERT", "SELECT")),
                  grant(user, POD_B, privileges=("INSERT", "SELECT")))
    first = await executor.converge(wanted)
    assert len(first.added) == 2
    assert await executor.converge(wanted) == Converged()


async def test_a_grant_leaving_desired_drops_the_account_and_kills_its_session(
        pair: MariaDbPair, executor: MysqlExecutor, credentials: DictCredentials, user: str) -> None:
    pw = password(credentials, user)
    await executor.converge(plan(MASTER, user, grant(user, POD_A), grant(user, POD_B)))
    session = connect_as(user, pw, POD_A)
    kept = connect_as(user, pw, POD_B)
    result = await executor.converge(plan(MASTER, user, grant(user, POD_B)))
    gone = MysqlAccess(user, "demo", ("SELECT",), "", "")  # the server does not know whose it was
    assert result.removed == (Grant(Kind.MYSQL, POD_A, MASTER, gone),)
    assert accounts(pair, user) == {POD_B}
    with pytest.raises(pymysql.err.OperationalError), session.cursor() as cursor:
        cursor.execute("SELECT 1")  # killed: the IP may already belong to another pod
    assert refused(user, pw, POD_A) in ACCESS_DENIED
    with kept.cursor() as cursor:  # the other pod's session is untouched
        cursor.execute("SELECT 1")
    kept.close()


async def test_a_changed_password_is_altered(executor: MysqlExecutor, credentials: DictCredentials,
                                             user: str) -> None:
    old = password(credentials, user)
    await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    credentials.passwords[("demo-api", "dev", user)] = new = "n3w'pass\\word\"; DROP USER x --"
    result = await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    assert result.added == (grant(user, POD_A),)
    assert refused(user, old, POD_A) == 1045
    connect_as(user, new, POD_A).close()
    assert await executor.converge(plan(MASTER, user, grant(user, POD_A))) == Converged()


async def test_privileges_added_by_hand_are_revoked(pair: MariaDbPair, executor: MysqlExecutor,
                                                    credentials: DictCredentials, user: str) -> None:
    wanted = plan(MASTER, user, grant(user, POD_A, privileges=("INSERT", "SELECT")))
    await executor.converge(wanted)
    for sql in ("GRANT DELETE, DROP ON `demo`.* TO %s@%s", "GRANT SELECT ON `other`.* TO %s@%s",
                "GRANT PROCESS ON *.* TO %s@%s", "GRANT UPDATE ON `other`.`t` TO %s@%s"):
        admin_query(pair, sql, (user, POD_A))
    result = await executor.converge(wanted)
    assert result.added == (grant(user, POD_A, privileges=("INSERT", "SELECT")),)
    assert grants_of(pair, user, POD_A) == {f"GRANT USAGE ON *.* TO `{user}`@`{POD_A}`",
                                            f"GRANT SELECT, INSERT ON `demo`.* TO `{user}`@`{POD_A}`"}
    with connect_as(user, password(credentials, user), POD_A) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT IGNORE INTO items VALUES (%s, 'by a pod')",
                       (abs(hash(user)) % 10**6 + 100,))
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute("DELETE FROM items WHERE id = 1")
    assert await executor.converge(wanted) == Converged()


async def test_half_made_accounts_and_orphan_sessions_are_finished(
        pair: MariaDbPair, executor: MysqlExecutor, credentials: DictCredentials, user: str) -> None:
    """As after a crash: an account created without its GRANT, a dropped account's live session."""
    pw = password(credentials, user)
    await executor.converge(plan(MASTER, user, grant(user, POD_B)))
    orphan = connect_as(user, pw, POD_B)
    admin_query(pair, "DROP USER %s@%s", (user, POD_B))  # dropped, then "crashed" before KILL
    admin_query(pair, "CREATE USER %s@%s IDENTIFIED BY %s", (user, POD_A, "stale"))
    result = await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    assert result.added == (grant(user, POD_A),)
    connect_as(user, pw, POD_A).close()
    with pytest.raises(pymysql.err.OperationalError), orphan.cursor() as cursor:
        cursor.execute("SELECT 1")


async def test_accounts_outside_the_scope_or_not_pinned_to_an_ip_are_never_touched(
        pair: MariaDbPair, executor: MysqlExecutor, user: str) -> None:
    stranger = f"s{user}"
    admin_query(pair, "CREATE USER %s@%s IDENTIFIED BY 'x'", (stranger, POD_A))
    admin_query(pair, "GRANT ALL ON `demo`.* TO %s@%s", (stranger, POD_A))
    admin_query(pair, "CREATE USER %s@'%%' IDENTIFIED BY 'x'", (user,))
    admin_query(pair, "CREATE USER %s@'localhost' IDENTIFIED BY 'x'", (user,))
    assert await executor.converge(plan(MASTER, user)) == Converged()
    assert accounts(pair, stranger) == {POD_A} and accounts(pair, user) == {"%", "localhost"}
    assert grants_of(pair, stranger, POD_A) >= {f"GRANT ALL PRIVILEGES ON `demo`.* TO `{stranger}`@`{POD_A}`"}


async def test_the_master_s_accounts_do_not_replicate_and_replication_keeps_running(
        pair: MariaDbPair, executor: MysqlExecutor, user: str) -> None:
    await executor.converge(plan(MASTER, user, grant(user, POD_A)))
    await executor.converge(plan(MASTER, user))
    await executor.converge(plan(MASTER, user, grant(user, POD_B)))
    await executor.converge(plan(REPLICA, user, grant(user, POD_B, REPLICA)))
    admin_query(pair, "INSERT INTO demo.items VALUES (999, 'after') ON DUPLICATE KEY UPDATE name = 'after'")
    position = admin_query(pair, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
    assert admin_query(pair, "SELECT MASTER_GTID_WAIT(%s, 10)", (position,), replica=True)[0][0] == 0
    replica = pymysql.connect(host="127.0.0.1", port=REPLICA_PORT, user=pair.admin_user,
                              password=pair.admin_password, cursorclass=pymysql.cursors.DictCursor)
    with replica, replica.cursor() as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        status = cursor.fetchone()
    assert status is not None
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert (status["Last_Errno"], status["Last_SQL_Errno"], status["Last_IO_Errno"]) == (0, 0, 0)
    assert accounts(pair, user) == {POD_B} and accounts(pair, user, replica=True) == {POD_B}


# --- failures and bad input ------------------------------------------------------------------------

async def test_a_server_that_is_down_is_unavailable_without_leaking_a_password(
        credentials: DictCredentials, user: str, caplog: pytest.LogCaptureFixture) -> None:
    down = Inventory(mysql={"main": MysqlCluster(master=Server(host="127.0.0.1", port=23199),
                                                 admin=ADMIN_REF)})
    executor = MysqlExecutor(lambda: down, credentials)
    caplog.set_level(logging.DEBUG)
    target = "main/127.0.0.1:23199"
    with pytest.raises(ExecutorUnavailableError) as caught:
        await executor.converge(plan(target, user, grant(user, POD_A, target)))
    text = caught.value.one_line()
    assert "main/127.0.0.1:23199" in text
    wrong_admin = DictCredentials((credentials.admin_credentials[0], "not-the-admin-password"))
    wrong_admin.passwords = credentials.passwords
    with pytest.raises(ExecutorUnavailableError) as denied:
        await MysqlExecutor(lambda: down, wrong_admin).converge(plan("main/127.0.0.1:23199", user))
    for secret in (credentials.admin_credentials[1], password(credentials, user), "not-the-admin-password"):
        assert secret not in text and secret not in denied.value.one_line() and secret not in caplog.text


async def test_wrong_admin_password_is_unavailable_and_names_no_secret(
        pair: MariaDbPair, credentials: DictCredentials, user: str) -> None:
    wrong = DictCredentials((pair.admin_user, "wrong-admin-pw"))
    wrong.passwords = credentials.passwords
    from tests.authz.conftest import inventory  # noqa: PLC0415

    with pytest.raises(ExecutorUnavailableError) as caught:
        await MysqlExecutor(inventory, wrong).converge(plan(MASTER, user, grant(user, POD_A)))
    assert "1045" in caught.value.one_line() and MASTER in caught.value.one_line()
    for secret in ("wrong-admin-pw", pair.admin_password, password(credentials, user)):
        assert secret not in caught.value.one_line()


@pytest.mark.parametrize(("field", "bad"), [
    ("user", "a'@'%"),
    ("user", "x; DROP USER root"),
    ("database", "demo`.* TO x; --"),
    ("database", "demo'"),
    ("ip", "127.0.0.1' OR '1'='1"),
    ("ip", "%"),
    ("ip", "10.0.0.0/8"),
    ("privileges", "ALL PRIVILEGES"),
    ("privileges", "SELECT ON *.* TO x; --"),
    ("privileges", "GRANT OPTION"),
    ("service", "demo';--"),
])
async def test_injection_attempts_are_refused_before_any_sql(
        executor: MysqlExecutor, credentials: DictCredentials, field: str, bad: str) -> None:
    access: dict[str, Any] = {"user": "demo_api", "database": "demo", "privileges": ("SELECT",),
                              "service": "demo-api", "env": "dev"}
    ip = bad if field == "ip" else POD_A
    if field != "ip":
        access[field] = (bad,) if field == "privileges" else bad
    wanted = TargetPlan(Kind.MYSQL, MASTER, frozenset({Grant(Kind.MYSQL, ip, MASTER, MysqlAccess(**access))}),
                        frozenset({"demo_api", str(access["user"])}))
    with pytest.raises(InvalidNameError):
        await executor.converge(wanted)
    assert credentials.calls == 0  # refused before even asking for a password, let alone connecting


@pytest.mark.parametrize("target", [
    "main/127.0.0.1:3306",            # not a server of the cluster
    "nope/127.0.0.1:23160",           # unknown cluster
    "main/127.0.0.1",                 # no port
    "main/127.0.0.1:23160; DROP",     # junk
])
async def test_a_target_the_inventory_lacks_is_a_clear_error(executor: MysqlExecutor, user: str,
                                                             target: str) -> None:
    with pytest.raises((MysqlTargetError, InvalidNameError)) as caught:
        await executor.converge(plan(target, user))
    assert caught.value.one_line()


async def test_a_desired_user_outside_the_scope_or_claimed_twice_is_refused(executor: MysqlExecutor,
                                                                          user: str) -> None:
    with pytest.raises(MysqlTargetError, match="not in scope"):
        await executor.converge(TargetPlan(Kind.MYSQL, MASTER, frozenset({grant(user, POD_A)}), frozenset()))
    with pytest.raises(MysqlTargetError, match="claimed by"):
        await executor.converge(plan(MASTER, user, grant(user, POD_A),
                                     grant(user, POD_A, service="demo-web")))


async def test_the_admin_account_is_never_in_scope(executor: MysqlExecutor, pair: MariaDbPair) -> None:
    with pytest.raises(MysqlTargetError, match="admin"):
        await executor.converge(plan(MASTER, pair.admin_user))


# --- the pure decision ------------------------------------------------------------------------------

S, SI = frozenset({"SELECT"}), frozenset({"INSERT", "SELECT"})


@pytest.mark.parametrize(("actual", "desired", "expected"), [
    pytest.param({}, {("u", "10.0.0.1"): {"demo": S}},
                 ["CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", "GRANT SELECT ON `demo`.* TO %s@%s"],
                 id="missing account: create, grant"),
    pytest.param({("u", "10.0.0.1"): Actual("h", {"demo": S})}, {("u", "10.0.0.1"): {"demo": S}}, [],
                 id="matching: nothing"),
    pytest.param({("u", "10.0.0.1"): Actual("old", {"demo": S})}, {("u", "10.0.0.1"): {"demo": S}},
                 ["ALTER USER %s@%s IDENTIFIED BY %s"], id="other password: alter"),
    pytest.param({("u", "10.0.0.1"): Actual("h", {"demo": SI, "x": S})}, {("u", "10.0.0.1"): {"demo": S}},
                 ["REVOKE INSERT ON `demo`.* FROM %s@%s", "REVOKE SELECT ON `x`.* FROM %s@%s"],
                 id="extra privileges and databases: revoke"),
    pytest.param({("u", "10.0.0.1"): Actual("h", {"demo": S}, elevated=True)},
                 {("u", "10.0.0.1"): {"demo": S}},
                 ["REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", "GRANT SELECT ON `demo`.* TO %s@%s"],
                 id="global or table privileges: revoke all, grant again"),
    pytest.param({("u", "10.0.0.1"): Actual("h", {})}, {}, ["DROP USER IF EXISTS %s@%s"],
                 id="undesired: drop"),
])
def test_plan_changes(actual: dict[tuple[str, str], Actual],
                      desired: dict[tuple[str, str], dict[str, frozenset[str]]], expected: list[str]) -> None:
    wanted = {a: Desired("svc", "dev", dict(p)) for a, p in desired.items()}
    changes = plan_changes(target=MASTER, actual=actual, desired=wanted, hashes={a: "h" for a in wanted})
    assert [s.sql for s in changes.statements] == expected
    # passwords are placeholders filled at execution: the pure decision never holds one
    assert all(s.params[2] is None for s in changes.statements if "IDENTIFIED BY" in s.sql)
