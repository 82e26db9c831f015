"""Fixtures for the config center: a fresh, migrated SQLite catalog database per test and a store on it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from bizcloud.configcenter.store import ConfigStore
from tests.catalog.conftest import db_url, engine

__all__ = ["db_url", "engine"]  # the catalog's fixtures: a fresh, migrated SQLite file and its engine

INVENTORY = """\
kind: Inventory
mysql:
  local:
    master: {host: 10.0.0.1, port: 3316}
    slaves: [{host: 10.0.0.1, port: 3317}]
    admin: {namespace: bizcloud-system, name: mariadb-admin}
    environments: [dev]
redis:
  cache:
    host: cache-host
    port: 6379
hosts:
  cache-host:
    address: 10.0.0.2
    ports: [6379, 9000]
"""

DEMO_API = """\
name: demo-api
ports: {soa: 20880}
dependencies:
  mysql:
    - cluster: local
      database: demo
      user: demo_api
      privileges: [SELECT, INSERT]
      roles: [master, slaves]
"""

DEMO_WEB = """\
name: demo-web
ports: {http: 8080}
dependencies:
  soa:
    - interfaces: [io.bizcloud.demo.DemoApi]
  redis:
    - instance: cache
  tcp:
    - host: cache-host
      port: 9000
"""


@pytest.fixture
def store(engine: Engine) -> ConfigStore:
    return ConfigStore(engine)


@pytest.fixture
def stocked(store: ConfigStore) -> ConfigStore:
    """A store holding the inventory, demo-api and demo-web (each at version 1)."""
    store.apply(INVENTORY, author="ops")
    store.apply(DEMO_API + "---\n" + DEMO_WEB, author="dev")
    return store
