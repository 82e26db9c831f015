"""Fixtures for the catalog: a fresh, migrated SQLite file per test, a store on it, and instance factories.

A real SQLite file (not ``:memory:``) so WAL, busy timeouts and a second connection from "another
process" (a second engine) behave as they do between the monitor and the API server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bizcloud.catalog.db import make_engine, migrate
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid


def instance(uid: str = "uid-1", *, service: str = "demo-web", env: str = "dev",
             group: Group = Group.NORMAL, ip: str | None = "10.88.0.5", **kw: Any) -> Instance:
    fields: dict[str, Any] = {"namespace": f"bc-{env}", "pod": f"{service}-{uid}", "ports": {"http": 8080},
                              "ready": True, "node": "bizcloud-node", "release": "v1"}
    fields.update(kw)
    return Instance(service=service, env=env, group=group, uid=PodUid(uid), ip=ip, **fields)


def event(kind: EventType, inst: Instance, rv: str = "1") -> InstanceEvent:
    return InstanceEvent(type=kind, instance=inst, resource_version=rv, observed_at=0.0)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    migrate(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> CatalogStore:
    return CatalogStore(engine)
