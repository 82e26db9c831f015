"""The config store on a real, migrated SQLite catalog database: versions, checks across configs, history."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from bizcloud.configcenter.errors import ConfigError, ConfigNotFound
from bizcloud.configcenter.models import Base
from bizcloud.configcenter.store import ConfigStore
from tests.configcenter.conftest import DEMO_API, DEMO_WEB, INVENTORY


def refused(action: object) -> list[str]:
    assert callable(action)
    with pytest.raises(ConfigError) as caught:
        action()
    return caught.value.problems


def test_revision_0004_creates_exactly_the_config_model(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name != "config_versions")
                and not (d[0] == "remove_index" and d[1].table.name != "config_versions")]
        assert diff == []


def test_apply_stores_versions_and_equal_content_is_unchanged(store: ConfigStore) -> None:
    assert store.revision() == 0
    [inv] = store.apply(INVENTORY, author="ops", comment="first")
    assert (inv.kind, inv.name, inv.version, inv.status) == ("Inventory", "inventory", 1, "created")
    applied = store.apply(DEMO_API + "---\n" + DEMO_WEB, author="alice")
    assert [(a.name, a.version, a.status) for a in applied] == [("demo-api", 1, "created"),
                                                                ("demo-web", 1, "created")]
    revision = store.revision()
    # The same content, reordered and with a comment, is no new version and moves no revision.
    again = store.apply("# again\nports: {soa: 20880}\n" + DEMO_API.replace("ports: {soa: 20880}\n", ""),
                        author="bob")
    assert [(a.version, a.status) for a in again] == [(1, "unchanged")]
    assert store.revision() == revision
    changed = store.apply(DEMO_API.replace("[SELECT, INSERT]", "[SELECT, INSERT, UPDATE]"), author="bob",
                          comment="writes too")
    assert [(a.version, a.status) for a in changed] == [(2, "created")]
    assert store.revision() > revision
    current = store.get("demo-api")
    assert (current.version, current.author, current.comment) == (2, "bob", "writes too")
    assert current.yaml == DEMO_API.replace("[SELECT, INSERT]", "[SELECT, INSERT, UPDATE]")
    assert current.config is not None
    assert current.config["dependencies"]["mysql"][0]["privileges"] == ["INSERT", "SELECT", "UPDATE"]
    assert store.get("demo-api", 1).author == "alice"


def test_latest_is_what_the_planner_reads(stocked: ConfigStore) -> None:
    snap = stocked.latest()
    assert sorted(snap.services) == ["demo-api", "demo-web"]
    assert snap.inventory.mysql["local"].master.port == 3316
    assert snap.services["demo-api"].dependencies.mysql[0].roles == frozenset({"master", "slaves"})
    assert snap.versions == {"inventory": 1, "demo-api": 1, "demo-web": 1}
    assert snap.revision == stocked.revision() == 3
    assert [(v.kind, v.name) for v in stocked.list_latest()] == [
        ("Inventory", "inventory"), ("Service", "demo-api"), ("Service", "demo-web")]


def test_unknown_resources_are_refused_by_name(store: ConfigStore) -> None:
    found = refused(lambda: store.apply(DEMO_API, author="dev"))  # no inventory yet
    assert found == ["dependencies.mysql[0].cluster: unknown MySQL cluster 'local'; the inventory has: none"]
    store.apply(INVENTORY, author="ops")
    bad = (DEMO_WEB.replace("instance: cache", "instance: kache").replace("port: 9000", "port: 22")
           .replace("name: demo-web", "name: web2"))
    found = refused(lambda: store.apply(bad, author="dev"))
    assert found == ["dependencies.redis[0].instance: unknown Redis 'kache'; the inventory has: cache",
                     "dependencies.tcp[0].port: 22 is not protected on 'cache-host' (its ports: 6379, 9000)"]
    assert store.revision() == 1  # nothing stored


def test_one_mysql_user_belongs_to_one_service(stocked: ConfigStore) -> None:
    thief = DEMO_API.replace("name: demo-api", "name: demo-thief")
    found = refused(lambda: stocked.apply(thief, author="mallory"))
    assert found == ["dependencies.mysql[0].user: 'demo_api' on cluster 'local' belongs to service "
                     "'demo-api' — one MySQL user serves one service; choose another user (or remove it from "
                     "'demo-api' first)"]
    # Once demo-api lets go of the user (or is deleted), another service may claim it.
    stocked.delete("demo-api", author="ops")
    assert [a.status for a in stocked.apply(thief, author="dev")] == ["created"]


def test_several_documents_are_stored_all_or_none(stocked: ConfigStore) -> None:
    before = stocked.revision()
    good = DEMO_WEB.replace("name: demo-web", "name: demo-new")
    bad = DEMO_API.replace("name: demo-api", "name: demo-other")  # claims demo_api's user
    found = refused(lambda: stocked.apply(good + "---\n" + bad, author="dev"))
    assert len(found) == 1 and found[0].startswith("document 2 (demo-other): dependencies.mysql[0].user:")
    assert stocked.revision() == before
    with pytest.raises(ConfigNotFound):
        stocked.get("demo-new")


def test_inventory_change_may_not_strand_a_service(stocked: ConfigStore) -> None:
    no_slaves = INVENTORY.replace("    slaves: [{host: 10.0.0.1, port: 3317}]\n", "")
    found = refused(lambda: stocked.apply(no_slaves, author="ops"))
    assert found == ["inventory: service 'demo-api' would break — dependencies.mysql[0].roles: cluster "
                     "'local' has no slaves"]
    found = refused(lambda: stocked.delete("inventory", author="ops"))
    assert any(p.startswith("inventory: service 'demo-web' would break — dependencies.redis[0].instance")
               for p in found)
    # An inventory and the service fix in one upload: both are checked against each other.
    fixed = DEMO_API.replace("[master, slaves]", "[master]")
    applied = stocked.apply(no_slaves + "---\n" + fixed, author="ops")
    assert [(a.name, a.version) for a in applied] == [("inventory", 2), ("demo-api", 2)]


def test_history_diff_and_tombstones(stocked: ConfigStore) -> None:
    stocked.apply(DEMO_API.replace("[SELECT, INSERT]", "[SELECT]"), author="dev", comment="read only")
    tomb = stocked.delete("demo-api", author="ops", comment="retired")
    assert (tomb.version, tomb.deleted, tomb.config) == (3, True, None)
    assert [(v.version, v.deleted, v.comment) for v in stocked.history("demo-api")] == [
        (1, False, ""), (2, False, "read only"), (3, True, "retired")]
    with pytest.raises(ConfigNotFound, match="deleted in version 3"):
        stocked.get("demo-api")
    assert "demo-api" not in stocked.latest().services
    assert [v.name for v in stocked.list_latest()] == ["inventory", "demo-web"]
    diff = stocked.diff("demo-api", 1, 2)
    assert (diff.old, diff.new) == (1, 2)
    assert "--- demo-api v1\n+++ demo-api v2\n" in diff.text
    assert "\n-    - INSERT\n     - SELECT\n" in diff.text and "\n+ " not in diff.text
    assert stocked.diff("demo-api").text.count("\n-") > 5  # v2 -> tombstone: everything removed
    assert stocked.diff("demo-web", 0, 1).text.startswith("--- demo-web v0\n+++ demo-web v1\n")
    assert stocked.diff("demo-web", 1, 1).text == ""
    # Re-applying after a deletion is a new version, even with the old content.
    assert [(a.version, a.status) for a in stocked.apply(DEMO_API, author="dev")] == [(4, "created")]
    with pytest.raises(ConfigNotFound, match="has no version 9"):
        stocked.get("demo-api", 9)
    with pytest.raises(ConfigNotFound):
        stocked.history("nothing")
    with pytest.raises(ConfigNotFound):
        stocked.delete("nothing", author="ops")


def test_a_second_engine_sees_the_same_versions(stocked: ConfigStore, db_url: str) -> None:
    """The authorization worker polls ``revision()`` from its own process and connection."""
    from bizcloud.catalog.db import make_engine  # noqa: PLC0415

    other_engine = make_engine(db_url)
    try:
        other = ConfigStore(other_engine)
        seen = other.revision()
        stocked.apply(DEMO_WEB.replace("port: 9000", "port: 6379"), author="dev")
        assert other.revision() == seen + 1
        assert other.latest().services["demo-web"].dependencies.tcp[0].port == 6379
    finally:
        other_engine.dispose()
