"""One write lock per SQLite database in a process: every store's writing transaction queues on it.

Without it, a commit that met another thread's open write transaction (the journal, the grants)
waited in SQLite's busy handler, which sleeps in growing steps: the monitor's commit p99.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bizcloud.authz.journal import AuthzStore
from bizcloud.catalog.db import make_engine, write_lock
from bizcloud.catalog.errors import WriteBusy
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


# --- a write told not to wait (the monitor's event loop commits small batches itself) ------------

def test_a_nowait_write_refuses_at_once_while_another_thread_writes(engine: Engine,
                                                                    store: CatalogStore) -> None:
    up = event(EventType.UP, instance("uid-nowait"))
    lock, done_writing = write_lock(engine), threading.Event()

    def hold() -> None:
        with lock:
            done_writing.wait(10)

    thread, _ = _in_thread(hold)
    try:
        time.sleep(0.1)
        with pytest.raises(WriteBusy):
            store.apply_events(events=[up], wait=False)
    finally:
        done_writing.set()
        thread.join()
    assert store.instances() == []
    assert store.apply_events(events=[up], wait=False) == [store.latest_revision()]


def test_a_nowait_write_refuses_at_once_while_another_process_writes(store: CatalogStore,
                                                                     db_url: str) -> None:
    """Another process's open write transaction (a raw connection: no lock of ours) makes a nowait
    write fail within ms, not after the 10 s busy timeout; and the next waiting write still waits
    for it, so the connection's busy timeout came back."""
    up = event(EventType.UP, instance("uid-other-process"))
    other = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(WriteBusy):
            store.apply_events(events=[up], wait=False)
        assert time.monotonic() - started < 1.0
        assert store.instances() == []
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
        started = time.monotonic()
        assert store.apply_events(events=[up]) == [store.latest_revision()]   # waited for the COMMIT
        assert time.monotonic() - started >= 0.4
    finally:
        other.close()
    assert [i.uid for i in store.instances()] == ["uid-other-process"]
