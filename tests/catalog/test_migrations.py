"""Migrations: a fresh database reaches head, head is exactly the models, and SQLite is tuned."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bizcloud.accounts.models import Base as AccountsBase
from bizcloud.authz.models import Base as AuthzBase
from bizcloud.catalog.db import alembic_config, at_head, make_engine, migrate, script_head
from bizcloud.catalog.models import Base
from bizcloud.configcenter.models import Base as ConfigBase
from bizcloud.release.models import Base as ReleaseBase

TABLES = {"alembic_version", "services", "environments", "instances", "routes", "changes", "journal",
          "gray_policies", "users", "tokens", "audit",  # these three: bizcloud.accounts (revision 0003)
          "config_versions",  # bizcloud.configcenter (revision 0004)
          "authz_grants", "authz_journal",  # bizcloud.authz (revision 0005)
          "release_history", "gray_releases", "release_locks"}  # bizcloud.release (revision 0006)


def test_fresh_database_migrates_to_head_and_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            metadata = [Base.metadata, AccountsBase.metadata, ConfigBase.metadata, AuthzBase.metadata,
                        ReleaseBase.metadata]
            assert compare_metadata(context, metadata) == []  # type: ignore[arg-type]
            head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
            assert context.get_current_revision() == head
    finally:
        engine.dispose()


def test_migrate_is_idempotent_and_reversible(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    migrate(url)
    migrate(url)
    engine = make_engine(url)
    try:
        command.downgrade(alembic_config(engine), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        command.upgrade(alembic_config(engine), "head")
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()


def test_the_head_read_from_the_scripts_is_alembics(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'head.db'}")
    try:
        assert script_head() == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    finally:
        engine.dispose()


def test_a_database_at_head_is_left_alone_without_importing_alembic(tmp_path: Path) -> None:
    """Every start but the first finds the schema at head with one read: the process never loads
    Alembic. A database one revision behind is not at head, and migrate brings it there."""
    url = f"sqlite:///{tmp_path / 'current.db'}"
    engine = make_engine(url)
    try:
        assert not at_head(engine)  # no alembic_version table yet
        migrate(url)
        assert at_head(engine)
        code = (f"import sys; from bizcloud.catalog.db import migrate; migrate({url!r}); "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert loaded.stdout.strip() == "[]"
        command.downgrade(alembic_config(engine), "-1")
        assert not at_head(engine)
        migrate(url)
        assert at_head(engine)
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()


@pytest.mark.parametrize("attempt", range(3))
def test_processes_starting_together_all_reach_head(tmp_path: Path, attempt: int) -> None:
    """The monitor and the API server both migrate at start; the database makes them take turns.

    Two windows were lost before: switching a fresh file to WAL ("database is locked" without the
    busy handler) and Alembic committing between revisions on SQLite (a second process then ran a
    revision already applied: "table ... already exists"). Eight processes a round expose both.
    """
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from bizcloud.catalog.db import migrate; migrate({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    failures = [p.communicate(timeout=60)[1] for p in procs if p.wait(timeout=60) != 0]
    assert failures == []
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()


def test_threads_of_one_process_migrating_together_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'threads.db'}"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(url)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'x.db'}")  # parent dirs are created
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    finally:
        engine.dispose()
