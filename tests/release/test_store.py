"""The release store on a real, migrated SQLite catalog database: revision 0006, history, gray, locks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from bizcloud.catalog.db import make_engine
from bizcloud.catalog.models import utcnow
from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import Thresholds
from bizcloud.release.gray_plan import pause, start
from bizcloud.release.models import Base
from bizcloud.release.store import OperationConflict, ReleaseStore
from tests.catalog.conftest import db_url, engine  # noqa: F401

TABLES = {"release_history", "gray_releases", "release_locks"}


@pytest.fixture
def store(engine: Engine) -> ReleaseStore:  # noqa: F811
    return ReleaseStore(engine)


def test_revision_0006_creates_exactly_the_release_model(engine: Engine) -> None:  # noqa: F811
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name not in TABLES)
                and not (d[0] == "remove_index" and d[1].table.name not in TABLES)]
        assert diff == []


def test_history_is_recorded_finished_and_listed_newest_first_with_filters(store: ReleaseStore) -> None:
    first = store.record(service="shop", env="dev", action="deploy", user="ops", detail={"image": "shop:v1"})
    store.record(service="shop", env="qa", action="scale", user="ops", outcome="ok", message="3 -> 5")
    store.record(service="cart", env="dev", action="gray-start", user="dev1")
    store.finish(first, outcome="ok", message="rolled out")
    everything = store.history()
    assert [e.action for e in everything] == ["gray-start", "scale", "deploy"]
    deploy = everything[-1]
    assert (deploy.outcome, deploy.message, deploy.detail, deploy.user) == ("ok", "rolled out",
                                                                            {"image": "shop:v1"}, "ops")
    assert deploy.finished_at is not None and deploy.finished_at >= deploy.started_at
    assert everything[0].outcome == "running" and everything[0].finished_at is None
    assert [e.env for e in store.history(service="shop")] == ["qa", "dev"]
    assert [e.service for e in store.history(env="dev")] == ["cart", "shop"]
    assert len(store.history(limit=1)) == 1


@pytest.mark.parametrize(("call", "words"), [
    (lambda s: s.record(service="a", env="b", action="explode", user="u"), "action: 'explode'"),
    (lambda s: s.record(service="a", env="b", action="deploy", user="u", outcome="meh"), "outcome: 'meh'"),
    (lambda s: s.finish(999, outcome="ok"), "999 does not exist"),
    (lambda s: s.finish(s.record(service="a", env="b", action="deploy", user="u"), outcome="running"),
     "outcome: 'running'"),
])
def test_bad_history_input_names_the_field(store: ReleaseStore, call: object, words: str) -> None:
    assert callable(call)
    with pytest.raises(BizCloudError) as caught:
        call(store)
    assert words in caught.value.message and caught.value.hint


def test_gray_state_round_trips_and_is_replaced(store: ReleaseStore) -> None:
    now = utcnow()
    state, _ = start(None, service="shop", env="dev", image="shop:v2", release="v2", base_image="shop:v1",
                     base_release="v1", replicas=10, now=now, user="ops", steps=(10, 30, 100),
                     whitelist=frozenset({"qa-1", "qa-2"}), thresholds=Thresholds(0.05, 250, 7))
    assert store.gray("shop", "dev") is None
    store.put_gray(state)
    assert store.gray("shop", "dev") == state
    paused = pause(state, now=now + timedelta(seconds=5))[0]
    store.put_gray(paused)
    assert store.gray("shop", "dev") == paused and store.gray("shop", "qa") is None
    assert store.grays() == [paused]


def test_a_second_operation_on_the_same_service_is_refused_naming_the_first(store: ReleaseStore) -> None:
    with store.operation("shop", "dev", "gray-start", "alice@cli"):
        with pytest.raises(OperationConflict) as caught, store.operation("shop", "dev", "deploy", "bob@api"):
            pass
        message = caught.value.message
        assert message.startswith("gray-start is already running on shop in dev: held by alice@cli since ")
        assert "deploy was not started" in message and "wait for it to finish" in caught.value.hint
        with store.operation("shop", "qa", "deploy", "bob@api"), store.operation("cart", "dev", "scale", "c"):
            pass    # other services and environments are free
    with store.operation("shop", "dev", "deploy", "bob@api"):
        pass        # released at the end of the block


def test_the_lock_is_released_when_the_operation_fails(store: ReleaseStore) -> None:
    with pytest.raises(RuntimeError), store.operation("shop", "dev", "deploy", "a"):
        raise RuntimeError("apply failed")
    with store.operation("shop", "dev", "deploy", "b"):
        pass


def test_an_expired_lock_is_taken_over_and_its_old_holder_cannot_release_the_new_one(
        store: ReleaseStore) -> None:
    with store.operation("shop", "dev", "gray-step", "dead-runner", ttl_s=0.05) as old:
        time.sleep(0.1)
        with store.operation("shop", "dev", "gray-rollback", "ops") as new:
            with pytest.raises(OperationConflict):
                old.renew()
            assert new.holder == "ops"
    # the old block's exit deleted nothing of the new holder's, and the new one released its own
    with store.operation("shop", "dev", "deploy", "x"):
        pass


def test_renew_keeps_a_long_operation_held(store: ReleaseStore) -> None:
    with store.operation("shop", "dev", "gray-step", "runner", ttl_s=0.2) as lock:
        time.sleep(0.1)
        lock.renew(ttl_s=60)
        time.sleep(0.15)
        with pytest.raises(OperationConflict), store.operation("shop", "dev", "deploy", "ops"):
            pass


@pytest.fixture
def two_stores(db_url: str) -> Iterator[tuple[ReleaseStore, ReleaseStore]]:  # noqa: F811
    """Two engines on one file: two processes' worth of connections."""
    engines = [make_engine(db_url), make_engine(db_url)]
    yield ReleaseStore(engines[0]), ReleaseStore(engines[1])
    for e in engines:
        e.dispose()


def _race(stores: tuple[ReleaseStore, ReleaseStore], round_: int) -> tuple[list[str], list[str]]:
    """Four threads (two per engine) start together; the winner holds until the three others are refused."""
    barrier = threading.Barrier(4)
    held = threading.Event()
    winners: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def contend(store: ReleaseStore, who: str) -> None:
        try:
            barrier.wait()
            with store.operation("shop", "dev", "deploy", who):
                winners.append(who)
                held.wait(timeout=5)
        except OperationConflict as e:
            refused.append(e.message)
            if len(refused) == 3:
                held.set()
        except BaseException as e:
            errors.append(e)
            held.set()

    threads = [threading.Thread(target=contend, args=(stores[i % 2], f"t{round_}-{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    return winners, refused


def test_threads_racing_for_one_lock_exactly_one_wins_each_round(
        two_stores: tuple[ReleaseStore, ReleaseStore]) -> None:
    for round_ in range(10):
        winners, refused = _race(two_stores, round_)
        assert len(winners) == 1 and len(refused) == 3, (winners, refused)
        assert all(f"held by {winners[0]}" in m for m in refused)
