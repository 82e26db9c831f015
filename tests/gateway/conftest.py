"""The gateway's tests reuse the catalog's fixtures (a migrated SQLite file, a store, a real API server)."""

from tests.catalog.conftest import db_url, engine, store  # noqa: F401
from tests.catalog.test_api import client, server  # noqa: F401
