"""The MySQL/MariaDB executor: makes one server's pod accounts exactly what the plan says.

The worker hands it a ``TargetPlan`` for one server, ``"<cluster>/<host>:<port>"`` (the master
and each slave are separate targets). ``plan.scope`` names the MySQL users BizCloud owns on that
cluster; ``plan.desired`` holds ``MysqlAccess`` grants: the account ``user@'<pod ip>'`` with the
service's password (read through ``MysqlCredentials``) and exactly the declared privileges on
```database`.*``. One converge is one pass over the server's kept admin session
(``bizcloud.authz.mysql_sessions``: opened once, pinged before each use, reopened when it broke):

1. read back, in one round trip: the scoped users' accounts whose host is an IP literal, their
   password hashes, database privileges and any privilege beyond the database level — all of
   them on a full converge (the worker's resync, a plan that changed nothing, the first
   converge of a target, after a failure, on a new admin session, and at least every
   ``FULL_READ_EVERY_S``), otherwise only the accounts whose desired state changed since the
   last converge (``concerned_accounts``): a pod's arrival among a thousand accounts reads one
   account, not a thousand;
2. decide (pure, ``plan_changes``): create missing accounts, ``ALTER USER`` a changed password,
   revoke extra and grant missing privileges, drop accounts that are no longer desired;
3. apply, all statements and the listing of live sessions in one round trip (multi-statement
   batches), then ``KILL`` every session of a scoped user from an IP that no longer holds an
   account (an IP is reused by the next pod; a crash between DROP and KILL is finished next time).

**Accounts are per server.** The admin session runs ``SET SESSION sql_log_bin=0``: the master's
account changes must not replicate, because the replica gets its own from its own converge, and a
replicated ``CREATE USER`` would collide with it and stop replication. Accounts of users outside
the scope, accounts whose host is not an IP literal (``'%'``, ``localhost``) and the admin's own
account are never touched. Names pass ``bizcloud.identifiers`` and are then quoted by one helper:
literals are escaped by the driver, database names through ``quote_identifier``; privilege keywords
come only from the validator's fixed set. Passwords are parameters of the statements only: they
never reach a log line, an exception or a ``Converged`` value.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bizcloud import identifiers
from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.authz.grants import Converged, Grant, Kind, MysqlAccess, TargetPlan
from bizcloud.authz.mysql_sessions import (
    CONNECT_TIMEOUT_S,
    IO_TIMEOUT_S,
    AdminSessions,
    Sql,
    StepError,
    run_batch,
)
from bizcloud.configcenter.schema import Inventory, SecretRef
from bizcloud.errors import BizCloudError

log = logging.getLogger("bizcloud.authz.mysql")

FULL_READ_EVERY_S = 30.0  # an incremental converge still reads everything back this often (drift)
ER_NO_SUCH_THREAD = 1094
# mysql.db's privilege columns, as the privilege names GRANT and REVOKE take.
DB_PRIVILEGE_COLUMNS = {
    "Select_priv": "SELECT", "Insert_priv": "INSERT", "Update_priv": "UPDATE", "Delete_priv": "DELETE",
    "Create_priv": "CREATE", "Drop_priv": "DROP", "Grant_priv": "GRANT OPTION",
    "References_priv": "REFERENCES", "Index_priv": "INDEX", "Alter_priv": "ALTER",
    "Create_tmp_table_priv": "CREATE TEMPORARY TABLES", "Lock_tables_priv": "LOCK TABLES",
    "Create_view_priv": "CREATE VIEW", "Show_view_priv": "SHOW VIEW",
    "Create_routine_priv": "CREATE ROUTINE", "Alter_routine_priv": "ALTER ROUTINE",
    "Execute_priv": "EXECUTE", "Event_priv": "EVENT", "Trigger_priv": "TRIGGER",
    "Delete_history_priv": "DELETE HISTORY",
}
_KNOWN_PRIVILEGES = identifiers.MYSQL_PRIVILEGES | set(DB_PRIVILEGE_COLUMNS.values())

Account = tuple[str, str]  # (user, ip)


class MysqlCredentials(Protocol):
    """Where passwords come from (Kubernetes Secrets in BizCloud; a dict in tests)."""

    async def admin(self, ref: SecretRef) -> tuple[str, str]:
        """The cluster's admin (user, password) from the Secret the inventory names."""
        ...

    async def password(self, service: str, env: str, user: str) -> str:
        """The password of ``service``'s MySQL ``user`` in ``env``."""
        ...


class MysqlTargetError(BizCloudError):
    """The plan names a server the inventory lacks, or asks for something that cannot be one account."""


def quote_identifier(name: str) -> str:
    """A database (or table) name as a backtick-quoted SQL identifier; the only place one is made."""
    return "`" + name.replace("`", "``") + "`"


# --- pure: targets, desired accounts, the changes ----------------------------------------------

@dataclass(frozen=True)
class Server:
    cluster: str
    host: str
    port: int
    admin: SecretRef


def parse_target(target: str) -> tuple[str, str, int]:
    """``"cluster/host:port"`` as validated parts. Purely computational."""
    cluster, slash, address = target.partition("/")
    host, colon, port = address.rpartition(":")
    if not slash or not colon or not port.isdigit():
        raise MysqlTargetError(f"MySQL target {target[:80]!r} is not 'cluster/host:port'",
                               hint="targets look like main/10.0.0.5:3306 (the planner makes them)")
    return (identifiers.service_name(cluster, "cluster"), identifiers.host(host.strip("[]"), "host"),
            identifiers.port(int(port), "port"))


def resolve_server(inventory: Inventory, target: str) -> Server:
    """The inventory's server behind ``target``; an unknown cluster or server is an error naming it."""
    name, host, port = parse_target(target)
    cluster = inventory.mysql.get(name)
    if cluster is None:
        raise MysqlTargetError(f"MySQL target {target}: unknown cluster {name!r}",
                               hint=f"the inventory has: {', '.join(sorted(inventory.mysql)) or 'none'}")
    if all((s.host, s.port) != (host, port) for s in (cluster.master, *cluster.slaves)):
        known = ", ".join(f"{s.host}:{s.port}" for s in (cluster.master, *cluster.slaves))
        raise MysqlTargetError(f"MySQL target {target}: {host}:{port} is not a server of cluster {name!r}",
                               hint=f"its servers are: {known}")
    return Server(cluster=name, host=host, port=port, admin=cluster.admin)


@dataclass
class Desired:
    """One account to hold: whose password, and the privileges per database."""

    service: str
    env: str
    privileges: dict[str, frozenset[str]] = field(default_factory=dict)


@functools.lru_cache(maxsize=65536)
def _checked(grant: Grant) -> tuple[str, str, str, str, str, frozenset[str]]:
    """One grant's names, validated (cached: a converge re-reads every desired grant each time)."""
    access = grant.detail
    if grant.kind is not Kind.MYSQL or not isinstance(access, MysqlAccess):
        raise MysqlTargetError(f"not a MySQL grant: {grant.text()}")
    return (identifiers.mysql_user(access.user), identifiers.ip_address(grant.subject_ip, "subject_ip"),
            identifiers.service_name(access.service, "service"), identifiers.service_name(access.env, "env"),
            identifiers.mysql_database(access.database), identifiers.mysql_privileges(access.privileges))


def desired_accounts(plan: TargetPlan) -> dict[Account, Desired]:
    """The plan's grants as accounts, every name validated. Purely computational.

    Two grants of one account merge their databases' privileges; they must share the service
    and environment that own its password (one account has one password). It runs on every
    converge over every grant of the target, so it walks the set as it is; only a plan with an
    error is walked again in order, so the error names the same grant every time.
    """
    try:
        return _accounts(plan, plan.desired)
    except (MysqlTargetError, identifiers.InvalidNameError):
        _accounts(plan, sorted(plan.desired, key=Grant.sort_key))
        raise


def _accounts(plan: TargetPlan, grants: Iterable[Grant]) -> dict[Account, Desired]:
    scope = {identifiers.mysql_user(u, "scope") for u in plan.scope}
    accounts: dict[Account, Desired] = {}
    for grant in grants:
        if grant.target != plan.target:
            raise MysqlTargetError(f"MySQL target {plan.target}: a grant of another target: {grant.text()}")
        user, ip, service, env, database, privileges = _checked(grant)
        if user not in scope:
            raise MysqlTargetError(f"MySQL target {plan.target}: user {user!r} is desired but not in scope",
                                   hint="the planner must own every user it grants (add it to the scope)")
        account = accounts.get((user, ip))
        if account is None:
            accounts[(user, ip)] = account = Desired(service, env)
        elif (account.service, account.env) != (service, env):
            first, second = sorted([f"{account.service}/{account.env}", f"{service}/{env}"])
            raise MysqlTargetError(
                f"MySQL target {plan.target}: {user}@{ip} is claimed by {first} and {second}",
                hint="one MySQL user per cluster belongs to one service and environment")
        held = account.privileges.get(database)
        account.privileges[database] = privileges if held is None else held | privileges
    return accounts


@dataclass(frozen=True)
class Actual:
    """What the server holds for one account."""

    auth: str                                 # the mysql_native_password hash, "" for other plugins
    privileges: Mapping[str, frozenset[str]]  # database -> privileges held on `database`.*
    elevated: bool = False                    # holds global, table, column or routine privileges


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[object, ...] = ()
    what: str = ""       # names the account in errors (never the parameters, which may be secret)


@dataclass(frozen=True)
class Changes:
    statements: tuple[Statement, ...]
    added: tuple[Grant, ...]
    removed: tuple[Grant, ...]


def _privilege_list(privileges: Iterable[str]) -> str:
    chosen = sorted(privileges)
    if any(p not in _KNOWN_PRIVILEGES for p in chosen):  # keywords come from the fixed set only
        raise MysqlTargetError(f"unknown privilege among {chosen}")
    return ", ".join(chosen)


def _minus(a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """The databases whose privileges in ``a`` differ from ``b``'s."""
    return {db: privs for db, privs in a.items() if b.get(db) != privs}


def _grants_of(target: str, account: Account, privileges: Mapping[str, frozenset[str]],
               owner: tuple[str, str] = ("", "")) -> list[Grant]:
    user, ip = account
    return [Grant(Kind.MYSQL, ip, target, MysqlAccess(user, db, tuple(sorted(privs)), *owner))
            for db, privs in sorted(privileges.items())]


def plan_changes(*, target: str, actual: Mapping[Account, Actual], desired: Mapping[Account, Desired],
                 hashes: Mapping[Account, str]) -> Changes:
    """The statements that make ``actual`` equal ``desired``, and the grants they add and remove.

    Purely computational. ``hashes`` is each desired account's expected password hash (computed
    by the server); statements that set a password carry the placeholder ``None`` for the caller
    to fill, so no secret passes through here. Removed grants name no service: the server does
    not know whose an account was.
    """
    statements: list[Statement] = []
    added: list[Grant] = []
    removed: list[Grant] = []
    for account in sorted(set(actual) | set(desired)):
        have, want = actual.get(account), desired.get(account)
        if have is not None and want is not None and not have.elevated and have.auth == hashes[account] \
                and have.privileges == want.privileges:
            continue  # the common case of a full read-back: nothing to do for this account
        user, ip = account
        who = f"{user}@{ip}"
        if want is None:
            assert have is not None
            statements.append(Statement("DROP USER IF EXISTS %s@%s", (user, ip), f"DROP USER {who}"))
            # an account without database privileges (a crash before its GRANT) is still a grant gone
            removed += _grants_of(target, account, have.privileges or {"*": frozenset({"USAGE"})})
            continue
        held: Mapping[str, frozenset[str]] = {}
        if have is None:
            statements.append(Statement("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, ip, None),
                                        f"CREATE USER {who}"))
        else:
            held = have.privileges
            if have.auth != hashes[account]:
                statements.append(Statement("ALTER USER %s@%s IDENTIFIED BY %s", (user, ip, None),
                                            f"ALTER USER {who}"))
            if have.elevated:
                statements.append(Statement("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, ip),
                                            f"REVOKE ALL FROM {who}"))
                held = {}
        for db in sorted(set(held) | set(want.privileges)):
            extra = held.get(db, frozenset()) - want.privileges.get(db, frozenset())
            missing = want.privileges.get(db, frozenset()) - held.get(db, frozenset())
            if extra:
                statements.append(Statement(f"REVOKE {_privilege_list(extra)} ON {quote_identifier(db)}.* "
                                            "FROM %s@%s", (user, ip), f"REVOKE ON {db} FROM {who}"))
            if missing:
                statements.append(Statement(f"GRANT {_privilege_list(missing)} ON {quote_identifier(db)}.* "
                                            "TO %s@%s", (user, ip), f"GRANT ON {db} TO {who}"))
        before = dict(have.privileges) if have else {}
        renewed = have is not None and (have.auth != hashes[account] or have.elevated)
        added += _grants_of(target, account, want.privileges if renewed else _minus(want.privileges, before),
                            (want.service, want.env))
        removed += _grants_of(target, account, _minus(before, want.privileges))
    return Changes(tuple(statements), tuple(added), tuple(removed))


# --- I/O: a kept admin session per server, the read-back, the batch -------------------------------

@functools.lru_cache(maxsize=65536)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    return host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


def _in(values: Iterable[object]) -> str:
    return ", ".join(["%s"] * len(list(values)))


@functools.lru_cache(maxsize=1024)
def native_password_hash(password: str) -> str:
    """What MariaDB's ``PASSWORD()`` gives and ``mysql_native_password`` stores: ``*`` and the upper
    hex of SHA1(SHA1(password)). Purely computational: no round trip to learn whether it changed."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


_ACCOUNTS = ("SELECT User, Host, JSON_VALUE(Priv, '$.plugin'), JSON_VALUE(Priv, '$.authentication_string'), "
             "JSON_VALUE(Priv, '$.access') FROM mysql.global_priv WHERE User IN ({users}){hosts}")
# One text column per row ("SELECT,INSERT"), not twenty flags: a thousand rows parse 10x faster.
_DB_PRIVILEGES = ("SELECT User, Host, Db, CONCAT_WS(',', "
                  + ", ".join(f"IF({column} = 'Y', '{name}', NULL)"
                              for column, name in DB_PRIVILEGE_COLUMNS.items())
                  + ") FROM mysql.db WHERE User IN ({users}){hosts}")
_FINER_PRIVILEGES = " UNION ".join(f"SELECT User, Host FROM mysql.{table} WHERE User IN ({{users}}){{hosts}}"
                                   for table in ("tables_priv", "columns_priv", "procs_priv"))
_SESSIONS = "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST WHERE USER IN ({users})"


@functools.lru_cache(maxsize=1024)
def _privilege_set(text: str) -> frozenset[str]:
    return frozenset(text.split(","))


def read_actual(cursor: Any, users: list[str], hosts: list[str] | None = None) -> dict[Account, Actual]:
    """The scoped users' IP-pinned accounts as the server holds them (global, db, table privileges),
    all of them, or only those on ``hosts``; three queries in one round trip.

    Reads ``mysql.global_priv`` (MariaDB 10.4+) rather than the ``mysql.user`` view, which
    rebuilds every column from JSON and costs ten times as much for a thousand accounts. With
    ``hosts`` the primary keys (Host, User[, Db]) answer directly instead of a scan of every
    owned account.
    """
    where = {"users": _in(users), "hosts": f" AND Host IN ({_in(hosts)})" if hosts else ""}
    params = (*users, *(hosts or ()))
    account_rows, db_rows, finer_rows = run_batch(cursor, [
        Sql(_ACCOUNTS.format(**where), params, "reading the accounts back"),
        Sql(_DB_PRIVILEGES.format(**where), params, "reading the database privileges back"),
        Sql(_FINER_PRIVILEGES.format(**where), params * 3, "reading the finer privileges back")])
    accounts: dict[Account, tuple[str, bool]] = {}
    for user, host, plugin, auth, access in account_rows:
        if _is_ip(host):
            accounts[(user, host)] = (auth or "" if plugin == "mysql_native_password" else "",
                                      str(access or "0") != "0")
    privileges: dict[Account, dict[str, frozenset[str]]] = {account: {} for account in accounts}
    for user, host, db, held in db_rows:
        if (user, host) in privileges and held:
            privileges[(user, host)][db] = _privilege_set(held)
    finer = {(user, host) for user, host in finer_rows}
    return {account: Actual(auth=auth, privileges=privileges[account], elevated=elevated or account in finer)
            for account, (auth, elevated) in accounts.items()}


def _sessions(rows: Iterable[tuple[Any, ...]]) -> list[tuple[int, Account]]:
    return [(int(session), (user, str(host).rpartition(":")[0].strip("[]"))) for session, user, host in rows]


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _await_gone(cursor: Any, sessions: list[int], *, attempts: int = 50) -> None:
    """Wait (at most ~0.5 s) until killed sessions have left the server: KILL only flags a thread,
    and "revoked" must mean no statement of that account runs any more."""
    for _ in range(attempts if sessions else 0):
        cursor.execute(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN ({_in(sessions)})",
                       tuple(sessions))
        if not cursor.fetchone()[0]:
            return
        time.sleep(0.01)


@dataclass(frozen=True)
class _Known:
    """What a target held right after its last converge: the ground for an incremental one."""

    users: tuple[str, ...]
    desired: Mapping[Account, Desired]
    hashes: Mapping[Account, str]
    full_at: float  # time.monotonic() of the last full read-back


def concerned_accounts(known: _Known, desired: Mapping[Account, Desired],
                       hashes: Mapping[Account, str]) -> set[Account]:
    """The accounts whose desired state (owner, privileges, password) differs from what the last
    converge left: the only ones an incremental converge reads back. Purely computational."""
    return {account for account in set(desired) | set(known.desired)
            if desired.get(account) != known.desired.get(account)
            or hashes.get(account) != known.hashes.get(account)}


class MysqlExecutor:
    """Converges one MySQL/MariaDB server's pod accounts to a plan (see the module docstring).

    Keeps one admin session per server open (``AdminSessions``); call ``close``/``aclose`` at
    shutdown. A converge reads back every owned account when asked (``everything``: the
    worker's resync), when its plan changed nothing since the last converge (the worker only
    converges an unchanged target to check it), the first time it meets a target, after a
    failure, on a new admin session, when the scope changed, and at least every ``full_every``
    seconds; otherwise only the accounts whose desired state changed since the last converge
    (``concerned_accounts``).
    """

    kind = Kind.MYSQL

    def __init__(self, inventory: Callable[[], Inventory], credentials: MysqlCredentials, *,
                 connect_timeout: float = CONNECT_TIMEOUT_S, io_timeout: float = IO_TIMEOUT_S,
                 full_every: float = FULL_READ_EVERY_S) -> None:
        self._inventory = inventory
        self._credentials = credentials
        self._full_every = full_every
        self.sessions = AdminSessions(connect_timeout=connect_timeout, io_timeout=io_timeout)
        self._known: dict[str, _Known] = {}
        self.full_reads = 0  # converges that read every owned account back (tests read it)

    def close(self) -> None:
        """Close the kept admin sessions and forget what the targets held (the next converge reads all)."""
        self._known.clear()
        self.sessions.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    async def converge(self, plan: TargetPlan, *, everything: bool = False) -> Converged:
        server = resolve_server(self._inventory(), plan.target)
        desired = desired_accounts(plan)
        users = sorted({identifiers.mysql_user(u, "scope") for u in plan.scope})
        if not users:
            return Converged()
        admin_user, admin_password = await self._credentials.admin(server.admin)
        if admin_user in users:
            raise MysqlTargetError(
                f"MySQL target {plan.target}: the admin user {admin_user!r} is in the scope",
                hint="BizCloud never manages its own admin account; give the service another user")
        owners = {(u, d.service, d.env) for (u, _), d in desired.items()}
        by_owner = {o: await self._credentials.password(o[1], o[2], o[0]) for o in sorted(owners)}
        passwords = {a: by_owner[(a[0], d.service, d.env)] for a, d in desired.items()}
        # as given, and as the driver escapes them into a statement's text (which errors may quote)
        from pymysql.converters import escape_string  # noqa: PLC0415 - see mysql_sessions' docstring

        secrets = [form for secret in (admin_password, *by_owner.values())
                   for form in (secret, escape_string(secret))]
        try:
            changes = await asyncio.to_thread(self._converge_sync, server=server, target=plan.target,
                                              admin=(admin_user, admin_password), users=users,
                                              desired=desired, passwords=passwords, everything=everything)
        except StepError as e:
            text = str(e.__cause__)
            clean = _redact(text, secrets)
            error = ExecutorUnavailableError(f"MySQL target {plan.target}: {e.what} failed: {clean}",
                                             hint="retried with backoff until the server accepts it")
            if clean != text:
                raise error from None  # the driver's text held a secret: keep it out of tracebacks
            raise error from e.__cause__
        if changes.statements:
            log.info("converged target=%s added=%d removed=%d statements=%d", plan.target, len(changes.added),
                     len(changes.removed), len(changes.statements))
        return Converged(added=changes.added, removed=changes.removed)

    def _converge_sync(self, *, server: Server, target: str, admin: tuple[str, str], users: list[str],
                       desired: dict[Account, Desired], passwords: dict[Account, str],
                       everything: bool) -> Changes:
        import pymysql  # noqa: PLC0415 - see mysql_sessions' docstring

        admin_user, admin_password = admin
        hashes = {account: native_password_hash(password) for account, password in passwords.items()}
        loopback = _is_loopback(server.host)
        with self.sessions.session(host=server.host, port=server.port, user=admin_user,
                                   password=admin_password, ssl_disabled=loopback) as (conn, fresh):
            known = self._known.pop(target, None)  # a failure below leaves nothing known: full next time
            now = time.monotonic()
            concerned: set[Account] | None = None
            # a new session may meet a restarted or restored server: read everything back then too
            if not everything and not fresh and known is not None and known.users == tuple(users) \
                    and now - known.full_at < self._full_every:
                # a plan that changed nothing is the worker checking (its resync, a config
                # change): read everything back then, so drift is repaired with or without the flag
                concerned = concerned_accounts(known, desired, hashes) or None
            try:
                with conn.cursor() as cursor:
                    changes = self._apply(cursor, target, users, desired, passwords=passwords, hashes=hashes,
                                          concerned=concerned)
            except pymysql.MySQLError as e:  # the session broke between statements
                raise StepError("converging") from e
            if concerned is None:
                self.full_reads += 1
            full_at = now if concerned is None or known is None else known.full_at
            self._known[target] = _Known(tuple(users), desired, hashes, full_at)
            return changes

    @staticmethod
    def _apply(cursor: Any, target: str, users: list[str], desired: dict[Account, Desired], *,
               passwords: dict[Account, str], hashes: dict[Account, str],
               concerned: set[Account] | None) -> Changes:
        import pymysql  # noqa: PLC0415 - see mysql_sessions' docstring

        hosts = sorted({ip for _, ip in concerned}) if concerned is not None else None
        actual = read_actual(cursor, users, hosts)
        wanted = desired
        if concerned is not None:
            actual = {a: held for a, held in actual.items() if a in concerned}
            wanted = {a: want for a, want in desired.items() if a in concerned}
        changes = plan_changes(target=target, actual=actual, desired=wanted, hashes=hashes)
        batch = [Sql(s.sql, tuple(passwords[(str(s.params[0]), str(s.params[1]))] if p is None else p
                                  for p in s.params), s.what)
                 for s in changes.statements]
        # Sessions are listed after the DROPs in the same round trip: one opened before a DROP is
        # listed and killed; none can open after it.
        *_, rows = run_batch(cursor, [*batch, Sql(_SESSIONS.format(users=_in(users)), tuple(users),
                                                  "listing the sessions")])
        killed = []
        for session, account in _sessions(rows):
            if account not in desired and _is_ip(account[1]):
                try:
                    cursor.execute("KILL CONNECTION %s", (session,))
                    killed.append(session)
                except pymysql.MySQLError as e:
                    if e.args[0] != ER_NO_SUCH_THREAD:  # it ended on its own meanwhile
                        raise StepError(f"KILL CONNECTION {session} of {account[0]}@{account[1]}") from e
        _await_gone(cursor, killed)
        return changes
