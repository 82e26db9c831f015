"""Alembic environment for the catalog: run by ``bizcloud.catalog.db.migrate`` at process start.

The engine comes from the caller (``config.attributes["engine"]``), so migrations use the same
SQLite tuning as the store; ``sqlalchemy.url`` is the fallback for running Alembic by hand.
Migrations run in one writing transaction: on SQLite that is ``BEGIN IMMEDIATE``, so two
processes starting together take turns and the second finds the schema already at head.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from bizcloud.catalog.db import make_engine, writer
from bizcloud.catalog.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    given = config.attributes.get("engine")
    if isinstance(given, Engine):
        return given
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no engine in config.attributes and no sqlalchemy.url")
    return make_engine(url)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = writer(_engine())
    with engine.connect() as connection:
        # Alembic assumes SQLite cannot roll DDL back and commits after every revision, which
        # lets a second process slip in between two revisions; SQLite can, so keep one transaction.
        sqlite = connection.dialect.name == "sqlite"
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=sqlite, transactional_ddl=True if sqlite else None)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
