"""Checkpoints off the commit path: the monitor's commits never copy the log back; a thread does."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bizcloud import daemons
from bizcloud.catalog.db import checkpoint, make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.daemons import _checkpoints
from bizcloud.monitor.model import EventType
from tests.catalog.conftest import event, instance


def _fill(store: CatalogStore, n: int, *, prefix: str) -> None:
    """``n`` single-event commits, as the monitor makes them while pods churn."""
    for i in range(n):
        pod = instance(f"{prefix}{i}", ip=f"10.1.{i // 250}.{i % 250}")
        store.apply_event(event=event(EventType.UP, pod))


def _log_pages(db: Path) -> int:
    """Pages in the write-ahead log (its header is 32 bytes, each frame a 24-byte header and a page)."""
    wal = db.with_name(db.name + "-wal")
    return (wal.stat().st_size - 32) // (24 + 4096) if wal.exists() else 0


def test_commits_leave_the_log_to_the_checkpoint(db_url: str, tmp_path: Path) -> None:
    db = Path(db_url.removeprefix("sqlite:///"))
    engine = make_engine(db_url, background_checkpoints=True)
    with engine.connect() as c:
        assert c.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
    store = CatalogStore(engine)
    _fill(store, 600, prefix="a")
    assert _log_pages(db) > 1000, "a commit checkpointed (SQLite's automatic checkpoint is at 1,000 pages)"
    log_pages, copied = checkpoint(engine) or (0, 0)
    assert log_pages > 1000 and copied == log_pages
    size = db.with_name(db.name + "-wal").stat().st_size
    _fill(store, 50, prefix="b")   # the log starts over from its beginning: it does not grow
    assert db.with_name(db.name + "-wal").stat().st_size == size
    with sqlite3.connect(db) as other:   # another process's view: everything is there
        assert other.execute("SELECT count(*) FROM instances").fetchone()[0] == 650
    engine.dispose()


def test_other_engines_keep_the_automatic_checkpoint(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as c:
        assert c.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 1000
    engine.dispose()


def test_the_monitor_checkpoints_every_interval_and_once_more_at_stop(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Path(db_url.removeprefix("sqlite:///"))
    rounds: list[tuple[int, int] | None] = []

    def counted(engine: Engine) -> tuple[int, int] | None:
        rounds.append(checkpoint(engine))
        return rounds[-1]

    monkeypatch.setattr(daemons, "checkpoint", counted)
    engine = make_engine(db_url, background_checkpoints=True)
    store = CatalogStore(engine)

    async def run(interval_s: float, commits: int, prefix: str) -> tuple[int, int]:
        """The database file's size (bytes) and the log's length (pages) right after the commits."""
        stop = asyncio.Event()
        task = asyncio.create_task(_checkpoints(engine, stop, interval_s=interval_s))
        await asyncio.to_thread(_fill, store, commits, prefix=prefix)
        seen = db.stat().st_size, _log_pages(db)
        stop.set()
        await asyncio.wait_for(task, 5)
        return seen

    empty = db.stat().st_size
    size, _ = asyncio.run(run(10.0, 300, "a"))    # no round yet: the rows are only in the log
    assert size == empty
    assert db.stat().st_size > empty, "stopping checkpoints once more"
    assert len(rounds) == 1
    rounds.clear()
    asyncio.run(run(0.05, 300, "b"))
    assert len(rounds) >= 3, "a round every 50 ms while 300 commits run, and one at stop"
    assert all(r is not None and r[0] == r[1] for r in rounds), "each round copied the whole log"
    engine.dispose()
