"""Admin sessions kept open per MySQL/MariaDB server, and statements sent in batches over them.

The MySQL executor (``bizcloud.authz.mysql``) converges a server each time a pod comes or goes.
Opening an admin session for each converge (TCP, handshake, authentication, ``SET SESSION``)
costs more than a one-account converge itself, so ``AdminSessions`` keeps one session per server
``(host, port)`` for the admin user and credential it was opened with, and lends it to one
converge at a time (a lock per server: the session is not shared by two threads). Before each
use it is checked with a ``COM_PING`` (one round trip, no reconnect: a session the server killed
or dropped is closed and a new one opened, so a restarted server or a ``KILL`` costs one
reconnect, not a failure). A different admin user or password for a server closes the old
session first; ``close`` ends them all at shutdown. Every session keeps connect, read and write
timeouts, so a server that is down or stops answering fails the converge (the worker retries with
backoff) instead of hanging it.

Sessions are opened with ``CLIENT.MULTI_STATEMENTS`` so ``run_batch`` sends many statements in
one round trip. That is safe only because no statement text is ever built from outside input by
hand: literals are escaped by the driver (``cursor.mogrify``), identifiers are quoted by
``quote_identifier`` after validation, and privilege keywords come from a fixed set. Each
statement of a batch is answered in order, so a failure names the statement that failed (by its
``what``, which carries no secret) and the ones after it did not run.

The driver is imported where a session is first opened, not with this module: the monitor loads
this module for its MySQL executor at start, while its CPU-bound backlog runs, and most
monitors converge no MySQL server then (or ever); pymysql (with the cryptography its
authentication plugins load) was 20 ms of that start.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pymysql

log = logging.getLogger("bizcloud.authz.mysql")

CONNECT_TIMEOUT_S = 5.0
IO_TIMEOUT_S = 10.0
BATCH_BYTES = 256 * 1024  # well under max_allowed_packet (16 MiB by default, 1 MiB at the least)


class StepError(Exception):
    """Connecting, or one statement of a batch, failed; ``what`` names the step (never a parameter or
    a password), the driver's error is attached as the cause."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class _Session:
    conn: pymysql.Connection[Any]
    id: int            # the server's CONNECTION_ID()
    user: str
    credential: bytes  # a digest of the password: enough to notice a change, useless to a reader


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode()).digest()


def _close(conn: pymysql.Connection[Any]) -> None:
    import pymysql  # noqa: PLC0415 - see the module docstring

    with contextlib.suppress(pymysql.Error, OSError):
        conn.close()


class AdminSessions:
    """One open admin session per server, lent to one caller at a time (see the module docstring)."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT_S,
                 io_timeout: float = IO_TIMEOUT_S) -> None:
        self._connect_timeout = connect_timeout
        self._io_timeout = io_timeout
        self._sessions: dict[tuple[str, int], _Session] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self.opened = 0  # sessions opened so far (tests and the benchmark read it)

    def _lock(self, key: tuple[str, int]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def session(self, *, host: str, port: int, user: str, password: str,
                ssl_disabled: bool) -> Iterator[tuple[pymysql.Connection[Any], bool]]:
        """The server's admin session, checked and ready, and whether it was just opened.

        Blocking: run it in a thread. Any error raised inside the block closes the session (its
        state is unknown), so the next caller opens a fresh one. Connecting failures raise the
        driver's error as ``StepError("connecting to …")``.
        """
        import pymysql  # noqa: PLC0415 - see the module docstring

        key = (host, port)
        lock = self._lock(key)
        if not lock.acquire(timeout=self._connect_timeout + 2 * self._io_timeout):
            raise StepError(f"waiting for the admin session to {host}:{port} (busy)")
        try:
            current, fresh = self._sessions.pop(key, None), False
            if current is not None and (current.user, current.credential) != (user, _digest(password)):
                log.info("admin session closed host=%s port=%d reason=credential changed", host, port)
                _close(current.conn)
                current = None
            if current is not None:
                try:
                    current.conn.ping(reconnect=False)
                except (pymysql.Error, OSError) as e:
                    log.info("admin session reopened host=%s port=%d reason=%s", host, port,
                             type(e).__name__)
                    _close(current.conn)
                    current = None
            if current is None:
                try:
                    conn, session_id = self._open(host, port, user, password, ssl_disabled)
                except (pymysql.Error, OSError) as e:
                    raise StepError(f"connecting to {host}:{port} as {user}") from e
                current, fresh = _Session(conn, session_id, user, _digest(password)), True
            try:
                yield current.conn, fresh
            except BaseException:
                _close(current.conn)
                raise
            self._sessions[key] = current
        finally:
            lock.release()

    def _open(self, host: str, port: int, user: str, password: str,
              ssl_disabled: bool) -> tuple[pymysql.Connection[Any], int]:
        # TLS is preferred (the driver's default) except on loopback, where it protects nothing
        # and building its context costs more than a whole converge.
        import pymysql  # noqa: PLC0415 - see the module docstring
        from pymysql.constants import CLIENT  # noqa: PLC0415

        conn = pymysql.connect(host=host, port=port, user=user, password=password, ssl_disabled=ssl_disabled,
                               connect_timeout=self._connect_timeout, read_timeout=self._io_timeout,
                               write_timeout=self._io_timeout, autocommit=True,
                               client_flag=CLIENT.MULTI_STATEMENTS)
        try:
            with conn.cursor() as cursor:
                # Accounts are per server: the master's must not replicate (see bizcloud.authz.mysql).
                cursor.execute("SET SESSION sql_log_bin=0")
                cursor.execute("SELECT CONNECTION_ID()")
                (session_id,) = cursor.fetchall()[0]
        except BaseException:
            _close(conn)
            raise
        self.opened += 1
        log.info("admin session opened host=%s port=%d user=%s id=%d", host, port, user, session_id)
        return conn, int(session_id)

    def session_id(self, host: str, port: int) -> int | None:
        """The server's ``CONNECTION_ID()`` of the kept session to ``host:port`` (None when none is kept)."""
        session = self._sessions.get((host, port))
        return session.id if session is not None else None

    def close(self) -> None:
        """Close every kept session (at shutdown), waiting up to the I/O timeout for one in use."""
        with self._guard:
            keys = list(self._locks)  # a session lent out is not in _sessions until it comes back
        for key in keys:
            lock = self._lock(key)
            if lock.acquire(timeout=self._io_timeout):
                try:
                    session = self._sessions.pop(key, None)
                    if session is not None:
                        _close(session.conn)
                finally:
                    lock.release()


@dataclass(frozen=True)
class Sql:
    """One statement with its driver parameters; ``what`` names it in errors (no secrets there)."""

    sql: str
    params: tuple[object, ...] = ()
    what: str = ""


def run_batch(cursor: Any, statements: Sequence[Sql]) -> list[tuple[tuple[Any, ...], ...]]:
    """Run ``statements`` in order, several per round trip; the rows each one returned.

    Statements are sent ``BATCH_BYTES`` at a time. The first failure raises ``StepError``
    naming that statement (the server runs none after it). Parameters are escaped by the
    driver; a statement's text is never built from them here.
    """
    results: list[tuple[tuple[Any, ...], ...]] = []
    chunk: list[tuple[str, str]] = []
    size = 0
    for statement in statements:
        text = cursor.mogrify(statement.sql, statement.params) if statement.params else statement.sql
        if chunk and size + len(text) > BATCH_BYTES:
            results += _send(cursor, chunk)
            chunk, size = [], 0
        chunk.append((text, statement.what or statement.sql.split(" ", 2)[0]))
        size += len(text) + 1
    if chunk:
        results += _send(cursor, chunk)
    return results


def _send(cursor: Any, chunk: list[tuple[str, str]]) -> list[tuple[tuple[Any, ...], ...]]:
    import pymysql  # noqa: PLC0415 - loaded by the session the cursor came from

    results: list[tuple[tuple[Any, ...], ...]] = []
    index = 0
    try:
        cursor.execute(";\n".join(text for text, _ in chunk))
        results.append(tuple(cursor.fetchall()))
        for index in range(1, len(chunk)):
            if not cursor.nextset():
                raise pymysql.err.InternalError(0, f"the server answered {index} of {len(chunk)} statements")
            results.append(tuple(cursor.fetchall()))
    except pymysql.MySQLError as e:
        raise StepError(chunk[index][1]) from e
    return results
