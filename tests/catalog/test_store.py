"""The store: events converge the catalog and write one change per real change; CRUD speaks domain errors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

import pytest

from bizcloud.catalog.db import make_engine
from bizcloud.catalog.errors import AlreadyExists, CatalogUnavailable, InUse, NotFound
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType, Group, InstanceEvent
from tests.catalog.conftest import event, instance

UP, DOWN, CHANGED = EventType.UP, EventType.DOWN, EventType.CHANGED


class _ReadOnlyPorts(Mapping[str, int]):
    """Ports as some other mapping than a dict (``Instance.ports`` is any ``Mapping``)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self._ports = ports

    def __getitem__(self, key: str) -> int:
        return self._ports[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)


A = instance("a")


@pytest.mark.parametrize(("events", "changes", "left"), [
    pytest.param([event(UP, A)], [UP], 1, id="up-adds"),
    pytest.param([event(UP, A), event(UP, A, rv="2")], [UP], 1, id="up-twice-one-change"),
    pytest.param([event(DOWN, A)], [], 0, id="down-unknown-no-change"),
    pytest.param([event(UP, A), event(DOWN, A)], [UP, DOWN], 0, id="up-then-down"),
    pytest.param([event(UP, A), event(DOWN, A), event(DOWN, A)], [UP, DOWN], 0, id="down-twice"),
    pytest.param([event(UP, A), event(CHANGED, instance("a", ports={"http": 9090}))], [UP, CHANGED], 1,
                 id="changed-ports"),
    pytest.param([event(UP, A), event(CHANGED, A)], [UP], 1, id="changed-but-equal"),
    pytest.param([event(CHANGED, A)], [UP], 1, id="changed-unknown-is-up"),
    pytest.param([event(UP, A), event(UP, instance("a", release="v2"))], [UP, CHANGED], 1, id="release"),
    pytest.param([event(UP, A), event(UP, instance("a", group=Group.GRAY))], [UP, DOWN, UP], 1,
                 id="group-move-leaves-and-joins"),
    pytest.param([event(UP, A), event(UP, instance("b"))], [UP, UP], 2, id="two-pods"),
    # what the catalog does not keep never makes a change, whichever way round it arrives
    pytest.param([event(UP, A), event(UP, instance("a", soa_interfaces="com.example.Orders", authorized=True),
                                      rv="2")], [UP], 1, id="unkept-fields-after"),
    pytest.param([event(UP, instance("a", soa_interfaces="com.example.Orders", authorized=True)),
                  event(UP, A, rv="2")], [UP], 1, id="unkept-fields-before"),
    pytest.param([event(UP, instance("a", ports=_ReadOnlyPorts({"http": 8080}))), event(UP, A, rv="2")],
                 [UP], 1, id="ports-not-a-dict"),
])
def test_events_converge_and_change_only_when_the_catalog_changes(
        store: CatalogStore, events: list[InstanceEvent], changes: list[EventType], left: int) -> None:
    revisions = [store.apply_event(event=e) for e in events]
    stream = store.changes_since(revision=0)
    assert [c.type for c in stream] == changes
    assert {r for r in revisions if r is not None} <= {c.revision for c in stream}
    assert revisions[-1] in (None, stream[-1].revision if stream else None)
    assert store.latest_revision() == (stream[-1].revision if stream else 0)
    assert len(store.all_instances()) == left
    if left:
        stored, last = store.all_instances()[events[-1].uid], events[-1].instance
        assert (stored.ip, dict(stored.ports), stored.release, stored.group) == \
            (last.ip, dict(last.ports), last.release, last.group)
        assert stored.soa_interfaces is None and stored.authorized is None and not stored.terminating


def test_apply_returns_the_revision_or_none(store: CatalogStore) -> None:
    first = store.apply_event(event=event(UP, A))
    assert first == 1
    assert store.apply_event(event=event(UP, A)) is None
    assert store.apply_event(event=event(DOWN, A)) == 2
    assert store.apply_event(event=event(DOWN, A)) is None


def test_changed_ports_are_stored_and_snapshotted(store: CatalogStore) -> None:
    store.apply_event(event=event(UP, A))
    rev = store.apply_event(event=event(CHANGED, instance("a", ports={"http": 8080, "soa": 20880})))
    assert store.instances(service="demo-web")[0].ports == {"http": 8080, "soa": 20880}
    [change] = store.changes_since(revision=(rev or 0) - 1)
    assert change.instance["ports"] == {"http": 8080, "soa": 20880}
    assert change.instance["ip"] == "10.88.0.5"


def test_down_records_the_last_known_instance(store: CatalogStore) -> None:
    store.apply_event(event=event(UP, A))
    store.apply_event(event=event(DOWN, instance("a", ip=None, ready=False)))
    down = store.changes_since(revision=1)[0]
    assert (down.type, down.instance["ip"], down.instance["ready"]) == (DOWN, "10.88.0.5", True)


def test_unseen_services_and_environments_are_created(store: CatalogStore) -> None:
    store.apply_event(event=event(UP, instance("x", service="demo-api", env="qa", namespace="bc-qa")))
    assert [s.name for s in store.list_services()] == ["demo-api"]
    assert [(e.name, e.namespace) for e in store.list_environments()] == [("qa", "bc-qa")]



def test_a_service_deleted_by_another_process_is_made_again_on_the_retry(store: CatalogStore,
                                                                          db_url: str) -> None:
    """The store remembers which services exist; another process's delete costs one failed attempt
    (the instance's foreign key), never a write that keeps failing."""
    store.apply_event(event=event(UP, instance("x", service="demo-api")))
    store.apply_event(event=event(DOWN, instance("x", service="demo-api")))
    other = make_engine(db_url)
    try:
        CatalogStore(other).delete_service(name="demo-api")
    finally:
        other.dispose()
    back = event(UP, instance("y", service="demo-api", ip="10.0.0.9"))
    with pytest.raises(CatalogUnavailable):
        store.apply_event(event=back)
    assert store.apply_event(event=back) == store.latest_revision()
    assert [s.name for s in store.list_services()] == ["demo-api"]
    assert [i.uid for i in store.instances()] == ["y"]


FLEET = [instance("n1"), instance("n2", env="qa"), instance("g1", group=Group.GRAY),
         instance("o1", service="demo-api"), instance("o2", service="demo-api", group=Group.GRAY, env="qa")]


@pytest.mark.parametrize(("service", "env", "group", "uids"), [
    pytest.param(None, None, None, {"n1", "n2", "g1", "o1", "o2"}, id="all"),
    pytest.param("demo-web", None, None, {"n1", "n2", "g1"}, id="service"),
    pytest.param("demo-web", "dev", None, {"n1", "g1"}, id="service-env"),
    pytest.param("demo-web", "dev", Group.GRAY, {"g1"}, id="service-env-gray"),
    pytest.param(None, "qa", None, {"n2", "o2"}, id="env"),
    pytest.param(None, None, Group.GRAY, {"g1", "o2"}, id="gray"),
    pytest.param("demo-api", "dev", Group.GRAY, set(), id="none"),
])
def test_instances_filter_by_service_env_and_group(store: CatalogStore, service: str | None, env: str | None,
                                                   group: Group | None, uids: set[str]) -> None:
    for inst in FLEET:
        store.apply_event(event=event(UP, inst))
    assert {i.uid for i in store.instances(service=service, env=env, group=group)} == uids


def test_snapshot_carries_the_revision_it_is_current_at(store: CatalogStore) -> None:
    for inst in FLEET:
        store.apply_event(event=event(UP, inst))
    snap = store.snapshot(service="demo-web")
    assert snap.revision == len(FLEET) == store.latest_revision()


def _create_twice(s: CatalogStore) -> None:
    s.create_service(name="svc")
    s.create_service(name="svc")


def _with_instance(s: CatalogStore) -> None:
    s.apply_event(event=event(UP, instance("p", service="svc")))


@pytest.mark.parametrize(("action", "error"), [
    pytest.param(_create_twice, AlreadyExists, id="create-existing"),
    pytest.param(lambda s: s.get_service(name="nope"), NotFound, id="get-unknown"),
    pytest.param(lambda s: s.update_service(name="nope", owner="x"), NotFound, id="update-unknown"),
    pytest.param(lambda s: s.delete_service(name="nope"), NotFound, id="delete-unknown"),
    pytest.param(lambda s: (_with_instance(s), s.delete_service(name="svc")), InUse,
                 id="delete-with-instances"),
    pytest.param(lambda s: s.create_route(host="a.example", path_prefix="/", service="nope", env="dev"),
                 NotFound, id="route-unknown-service"),
    pytest.param(lambda s: s.delete_route(route_id=42), NotFound, id="delete-unknown-route"),
])
def test_service_errors_are_domain_errors(store: CatalogStore, action: Callable[[CatalogStore], object],
                                          error: type[Exception]) -> None:
    with pytest.raises(error):
        action(store)


def test_service_crud_round_trip(store: CatalogStore) -> None:
    created = store.create_service(name="svc", description="d", owner="team-a")
    assert created.created_at.tzinfo is not None
    updated = store.update_service(name="svc", owner="team-b")
    assert (updated.description, updated.owner) == ("d", "team-b")
    assert updated.updated_at >= created.updated_at
    assert [s.name for s in store.list_services()] == ["svc"]
    store.delete_service(name="svc")
    assert store.list_services() == []


def test_routes_are_unique_per_host_and_path(store: CatalogStore) -> None:
    store.apply_event(event=event(UP, A))
    store.create_route(host="www.example", path_prefix="/", service="demo-web", env="dev")
    with pytest.raises(AlreadyExists):
        store.create_route(host="www.example", path_prefix="/", service="demo-web", env="dev")
    store.create_route(host="www.example", path_prefix="/api", service="demo-web", env="dev")
    assert [r.path_prefix for r in store.list_routes(service="demo-web")] == ["/", "/api"]


def test_changes_since_pages_in_revision_order(store: CatalogStore) -> None:
    for n in range(5):
        store.apply_event(event=event(UP, instance(f"p{n}")))
    assert [c.revision for c in store.changes_since(revision=1, limit=2)] == [2, 3]
    assert [c.revision for c in store.changes_since(revision=3)] == [4, 5]
    assert store.changes_since(revision=5) == []


def test_journal_records_outcomes(store: CatalogStore) -> None:
    e = event(UP, A, rv="77")
    store.record_journal(event=e, subscriber="gateway", outcome="retry", attempts=1, error="boom")
    store.record_journal(event=e, subscriber="gateway", outcome="ok", attempts=2)
    assert [(j["outcome"], j["attempts"], j["resource_version"]) for j in store.journal(uid="a")] == [
        ("ok", 2, "77"), ("retry", 1, "77")]


def test_writers_on_separate_connections_never_lock_each_other_out(db_url: str) -> None:
    """Two engines = two processes' worth of connections; BEGIN IMMEDIATE + busy_timeout serialize them."""
    engines = [make_engine(db_url) for _ in range(2)]
    stores = [CatalogStore(e) for e in engines]
    errors: list[BaseException] = []

    def write(s: CatalogStore, prefix: str) -> None:
        try:
            for n in range(40):
                inst = instance(f"{prefix}{n % 10}", release=f"r{n}")
                s.apply_event(event=event(UP, inst))
                s.create_service(name=f"{prefix}-svc-{n}")
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s, p)) for s, p in zip(stores, "xy", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        revisions = [c.revision for c in stores[0].changes_since(revision=0, limit=1000)]
        assert revisions == list(range(1, 81))
    finally:
        for e in engines:
            e.dispose()
