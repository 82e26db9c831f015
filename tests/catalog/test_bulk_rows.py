"""The store's SQLite bulk insert writes byte-for-byte what SQLAlchemy's Core insert writes.

``_insert_rows`` bypasses Core's per-row parameter compilation (the monitor's batches of thousands
of instances, changes and journal rows); the stored JSON text, timestamps and booleans must not
change, or readers (the API, the gateway's change stream, an older monitor) would see other values.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from bizcloud.catalog import models
from bizcloud.catalog.db import make_engine, migrate
from bizcloud.catalog.store import (
    _CHANGE_COLUMNS,
    _INSTANCE_COLUMNS,
    _JOURNAL_COLUMNS,
    CatalogStore,
    _insert_rows,
    _table,
)
from bizcloud.monitor.model import EventType
from tests.catalog.conftest import event, instance

AT = datetime(2026, 11, 28, 4, 48, 55, 123456, tzinfo=UTC)
ROWS: dict[type[models.Base], tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
    models.Instance: (_INSTANCE_COLUMNS, [
        ("uid-1", "svc", "dev", "normal", "bc-dev", "svc-1", "10.0.0.1", {"http": 8080, "soa": 20880},
         "node-a", "v1", True, "42", 7, AT),
        ("uid-2", "svc", "dev", "gray", "bc-dev", "svc-2", None, {}, None, None, False, "", 8, AT)]),
    models.Change: (_CHANGE_COLUMNS, [
        ("UP", "uid-1", "svc", "dev", "normal", {"uid": "uid-1", "ports": {"http": 8080}, "ip": "10.0.0.1",
                                                  "ready": True, "release": None}, AT)]),
    models.JournalEntry: (_JOURNAL_COLUMNS, [
        ("uid-1", "42", "UP", "svc", "dev", "catalog", "ok", 1, None, AT),
        ("uid-2", "43", "DOWN", "svc", "dev", "authz", "retry", 3, "OperationalError('locked')", AT)]),
}


def _engine(tmp_path: Path, name: str) -> Engine:
    url = f"sqlite:///{tmp_path / name}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as s, s.begin():  # the rows' foreign keys
        s.add_all([models.Service(name="svc"), models.Environment(name="dev", namespace="bc-dev")])
    return engine


def _raw(path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def test_bulk_rows_are_stored_exactly_as_core_stores_them(tmp_path: Path) -> None:
    fast, core = _engine(tmp_path, "fast.db"), _engine(tmp_path, "core.db")
    try:
        for model, (columns, rows) in ROWS.items():
            table = _table(model)
            with Session(fast) as s, s.begin():
                _insert_rows(s, table, columns, rows)
            with Session(core) as s, s.begin():
                s.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
            stored = _raw(tmp_path / "fast.db", table.name)
            assert stored == _raw(tmp_path / "core.db", table.name)
            assert len(stored) == len(rows)
    finally:
        fast.dispose()
        core.dispose()


def test_rows_written_in_bulk_read_back_as_the_values_given(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(f"sqlite:///{tmp_path / 'c.db'}")
    store = CatalogStore(engine)
    try:
        up = instance("uid-9", ports={"http": 8080, "soa": 20880}, release=None)
        revision = store.apply_event(event=event(EventType.UP, up))
        store.record_journal_many(events=[event(EventType.UP, up)], subscriber="catalog", outcome="ok",
                                  attempts=1)
        assert store.all_instances() == {up.uid: up}
        (change,) = store.changes_since(revision=0)
        assert (change.revision, change.type, change.instance["ports"]) == (revision, EventType.UP,
                                                                            {"http": 8080, "soa": 20880})
        assert change.at.tzinfo is not None
        (entry,) = store.journal(uid="uid-9")
        assert (entry["subscriber"], entry["outcome"], entry["error"]) == ("catalog", "ok", None)
        assert entry["at"].tzinfo is not None
    finally:
        engine.dispose()
