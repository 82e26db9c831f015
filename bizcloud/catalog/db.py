"""Where the catalog's database comes from: an engine for a URL, and migrations to the newest schema.

The monitor (writing instance events) and the API server (serving reads, writing services) are
separate processes on one database (``Settings.resolved_database_url()``). On the embedded
default, a SQLite file in the state directory, that needs WAL (readers never block the writer), a
busy timeout (writers queue instead of failing) and ``BEGIN IMMEDIATE`` for writing transactions
(a read-then-write transaction takes the write lock up front, so it cannot fail half way with
"database is locked"). PostgreSQL or MySQL need none of this and are used by giving their URL.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bizcloud.catalog.errors import CatalogUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "bizcloud_write"  # execution option: this transaction will write
NOWAIT_OPTION = "bizcloud_nowait"  # execution option: fail at once if another process holds the lock

# Alembic keeps its migration context in a module global: one migration per process at a time.
# (Processes are kept apart by the database itself: the migration runs in a writing transaction.)
_migrating = threading.Lock()

_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def write_lock(engine: Engine) -> threading.RLock:
    """The lock a process's writing transactions on this SQLite database take before ``BEGIN
    IMMEDIATE`` (one per database file, shared by every store on it; reentrant, so a store can hold
    it around its own session). Other databases get a lock of their own per caller.

    Why: SQLite's busy handler makes a writer that finds the write lock taken sleep in growing
    steps (1, 2, 5, 10 ... 100 ms) and look again, so a commit that arrived while another thread's
    journal or grants were being written waited up to ~100 ms past that transaction's end — the
    monitor's Ready -> committed p99 (apply p50 10 ms, p99 200 ms at 1,000 churning pods). Threads
    queued on this lock start the moment the one before them finishes. Other processes (the API
    server) still meet the busy handler; they write rarely.
    """
    if engine.dialect.name != "sqlite":
        return threading.RLock()
    with _write_locks_guard:
        return _write_locks.setdefault(str(engine.url), threading.RLock())


def make_engine(url: str, *, background_checkpoints: bool = False) -> Engine:
    """An engine for ``url``; for SQLite, tuned for one writer process among several readers.

    ``background_checkpoints``: commits on this engine never copy the write-ahead log back into
    the database file (``wal_autocheckpoint`` off); whoever asks for this must call ``checkpoint``
    every second or so, off the latency-bound path. Why: SQLite's automatic checkpoint runs inside
    the commit that crosses 1,000 pages of log, copying them and syncing the file: ~5 ms on a quiet
    machine against 0.02 ms for a small commit, and tens of ms while a cluster churns on the same
    cores — the monitor commits on its event loop, so every event queued behind such a commit
    waited for it. Other processes' engines keep the automatic checkpoint.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    if background_checkpoints:
        event.listen(engine, "connect", _no_autocheckpoint)
    return engine


def checkpoint(engine: Engine) -> tuple[int, int] | None:
    """Copy what the write-ahead log holds back into the database file without waiting for
    anyone (SQLite's PASSIVE checkpoint, as its automatic one); (log pages, pages copied), or None
    for a database that is not SQLite. Blocking: run it in a thread."""
    if engine.dialect.name != "sqlite":
        return None
    connection = engine.raw_connection()   # no SQLAlchemy transaction: a checkpoint needs none open
    try:
        cursor = connection.cursor()
        try:
            _busy, log_pages, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            cursor.close()
    finally:
        connection.close()
    return int(log_pages), int(copied)


def writer(engine: Engine, *, nowait: bool = False) -> Engine:
    """The same engine (same pool) whose transactions announce that they will write; with ``nowait``,
    a SQLite transaction that would wait for another process's write lock fails at its start instead
    (``sqlite3.OperationalError: database is locked``), before it has done anything."""
    return engine.execution_options(**{WRITE_OPTION: True, NOWAIT_OPTION: nowait})


class Sessions:
    """One transaction per ``with``: ``sessions()`` to read, ``sessions(write=True)`` to write (the
    write lock up front on SQLite). Objects stay readable after commit, so stores return plain values."""

    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self._lock = write_lock(engine)

    @contextmanager
    def __call__(self, *, write: bool = False) -> Iterator[Session]:
        with self._lock if write else contextlib.nullcontext(), \
                (self._write if write else self._read)() as session, session.begin():
            yield session


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (it would skip it before SELECTs and DDL); _sqlite_begin
    # emits it, so reads are repeatable and migrations transactional.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable with WAL except on power loss
    finally:
        cursor.close()


def _no_autocheckpoint(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")


def _use_wal(cursor: sqlite3.Cursor) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    # at once instead of calling the busy handler, so processes opening a fresh file together
    # (monitor and API server at first start) retry here within the busy timeout. WAL persists
    # in the file: once set, the read below returns it and nothing waits.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if not options.get(WRITE_OPTION, False):
        conn.exec_driver_sql("BEGIN")
    elif not options.get(NOWAIT_OPTION, False):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("PRAGMA busy_timeout = 0")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def alembic_config(engine: Engine) -> Config:
    """Alembic configured from code (no alembic.ini): scripts from the package, this engine."""
    from alembic.config import Config  # noqa: PLC0415 - see migrate_engine

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema; safe to run from several processes at once."""
    engine = make_engine(url)
    try:
        migrate_engine(engine)
    finally:
        engine.dispose()


_REVISION_LINE = re.compile(r'^(down_revision|revision)\b[^=\n]*=\s*(?:"([^"]*)"|None)', re.MULTILINE)


def script_head() -> str | None:
    """The newest migration's revision, read from the scripts' ``revision`` and ``down_revision``
    lines without Alembic; None unless there is exactly one head (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(script.read_text(encoding="utf-8")):
            if value:
                (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the database's ``alembic_version`` names the scripts' one head (a missing table,
    an empty one or any error is "no": Alembic then looks for itself)."""
    head = script_head()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:
        return False
    return list(versions) == [head]


Schema = Callable[[], Iterable[MetaData]]
"""Every table of the database, from every layer's models: given by a caller that may import them
all (``bizcloud.daemons``), since the catalog sits below most of the layers that own tables."""

# Alembic's own record of the revision, as ``alembic.ddl.impl.DefaultImpl.version_table_impl``
# makes it (name, type, primary key name), so a database made from the models is Alembic's to upgrade.
VERSION_TABLE = Table("alembic_version", MetaData(),
                      Column("version_num", String(32), nullable=False),
                      PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def migrate_engine(engine: Engine, *, schema: Schema | None = None) -> None:
    """Bring the schema to head. A database already there (every start but the first) is seen
    with one read and Alembic is never imported: its import (with Mako, its dialect modules and
    the migration scripts) was about 70 ms of CPU in each process start, a tenth of the
    monitor's start-up before its first event.

    With ``schema``, a SQLite database with no table at all (a brand-new catalog) is made from
    the models in one go and stamped at head (``create_fresh``), again without Alembic: importing
    it and running every revision is ~90 ms of CPU against ~22 ms (``bench.fresh_catalog``), on
    the monitor's first start taken from the watch that streams in meanwhile (one GIL). Any other
    database goes through Alembic's revisions.
    """
    if at_head(engine):
        return
    if schema is not None and create_fresh(engine, schema):
        return
    from alembic import command  # noqa: PLC0415

    try:
        with _migrating:
            command.upgrade(alembic_config(engine), "head")
    except SQLAlchemyError as e:
        raise _unavailable(e) from e


def create_fresh(engine: Engine, schema: Schema) -> bool:
    """Create every table of ``schema`` and stamp ``alembic_version`` at the scripts' head, if the
    database has nothing in it yet; whether it did. SQLite only (other databases: False).

    Why this is safe against another process preparing the same empty file (the server and the
    monitor at first start): emptiness is checked inside the writing transaction (``BEGIN
    IMMEDIATE``), which holds the database's write lock until the tables and the stamp commit
    together. The other process waits on that lock (busy timeout), then sees the tables and goes
    the usual way (at head: nothing to do). SQLite's DDL is transactional, so a failure or a kill
    half way leaves the file empty, never half made. MySQL commits each CREATE TABLE on its own,
    and PostgreSQL would need a lock of its own around the check: both keep to Alembic.
    """
    head = script_head()
    if head is None or engine.dialect.name != "sqlite":
        return False
    try:
        with write_lock(engine), writer(engine).connect() as connection, connection.begin():
            if connection.execute(text("SELECT 1 FROM sqlite_master LIMIT 1")).first() is not None:
                return False
            for metadata in schema():
                metadata.create_all(connection, checkfirst=False)
            VERSION_TABLE.create(connection)
            connection.execute(insert(VERSION_TABLE).values(version_num=head))
    except SQLAlchemyError as e:
        raise _unavailable(e) from e
    return True


def _unavailable(e: SQLAlchemyError) -> CatalogUnavailable:
    return CatalogUnavailable(f"cannot migrate the catalog database: {e}",
                              hint="check the database URL and that the database is reachable")
