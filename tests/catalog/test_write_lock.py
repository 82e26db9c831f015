"""One write lock per SQLite database in a process: every store's writing transaction queues on it.

Without it, a commit that met another thread's open write transaction (the journal, the grants)
waited in SQLite's busy handler, which sleeps in growing steps: the monitor's commit p99.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from bizcloud.authz.journal import AuthzStore
from bizcloud.catalog.db import make_engine, write_lock
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType
from tests.catalog.conftest import event, instance


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_one_lock_per_database_file(engine: Engine, db_url: str, tmp_path: Path) -> None:
    other = make_engine(db_url)
    elsewhere = make_engine(f"sqlite:///{tmp_path}/other.db")
    try:
        assert write_lock(engine) is write_lock(other)
        assert write_lock(engine) is not write_lock(elsewhere)
    finally:
        other.dispose()
        elsewhere.dispose()


def test_catalog_commits_journal_and_grants_wait_for_the_lock(engine: Engine, store: CatalogStore) -> None:
    authz = AuthzStore(engine)
    up = event(EventType.UP, instance("uid-lock"))
    writes = [lambda: store.apply_events(events=[up]),
              lambda: store.record_journal_many(events=[up], subscriber="catalog", outcome="ok", attempts=1),
              lambda: authz.refused([], trigger="test")]
    lock = write_lock(engine)
    for write in writes:
        with lock:
            thread, done = _in_thread(write)
            assert not done.wait(0.3), "a write went ahead while another thread held the write lock"
        assert done.wait(10), "the write did not finish once the lock was released"
        thread.join()
    assert [i.uid for i in store.instances()] == ["uid-lock"]


def test_a_store_holding_the_lock_can_still_write(engine: Engine, store: CatalogStore) -> None:
    """Reentrant: apply_events holds it around its own writing session."""
    with write_lock(engine):
        assert store.apply_events(events=[event(EventType.UP, instance("uid-r"))]) != [None]
