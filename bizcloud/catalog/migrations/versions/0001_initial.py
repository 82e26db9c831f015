"""The catalog's first schema: services, environments, instances, routes, the change stream, the journal.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written from Alembic's autogenerate output and checked by hand; the tests compare it with the
models (``alembic.autogenerate.compare_metadata`` must find no difference). Timestamps are plain
``DateTime(timezone=True)`` here: the models' UTC wrapper is Python-side only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name() -> sa.String:
    return sa.String(length=63)


def _at(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _name(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("name", name=op.f("uq_services_name")),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _name(), nullable=False),
        sa.Column("namespace", _name(), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("name", name=op.f("uq_environments_name")),
    )
    op.create_table(
        "instances",
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("service", _name(), nullable=False),
        sa.Column("env", _name(), nullable=False),
        sa.Column("group", sa.String(length=16), nullable=False),
        sa.Column("namespace", _name(), nullable=False),
        sa.Column("pod", sa.String(length=253), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("ports", sa.JSON(), nullable=False),
        sa.Column("node", sa.String(length=253), nullable=True),
        sa.Column("release", sa.String(length=128), nullable=True),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("resource_version", sa.String(length=64), nullable=False),
        _at("updated_at"),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.CheckConstraint("\"group\" IN ('normal', 'gray')", name=op.f("ck_instances_group")),
        sa.ForeignKeyConstraint(["env"], ["environments.name"], name=op.f("fk_instances_env_environments")),
        sa.ForeignKeyConstraint(["service"], ["services.name"], name=op.f("fk_instances_service_services")),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_instances")),
    )
    op.create_index("ix_instances_service_env_group", "instances", ["service", "env", "group"])
    op.create_table(
        "routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("path_prefix", sa.String(length=255), nullable=False),
        sa.Column("service", _name(), nullable=False),
        sa.Column("env", _name(), nullable=False),
        _at("created_at"),
        sa.ForeignKeyConstraint(["env"], ["environments.name"], name=op.f("fk_routes_env_environments")),
        sa.ForeignKeyConstraint(["service"], ["services.name"], name=op.f("fk_routes_service_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
        sa.UniqueConstraint("host", "path_prefix", name=op.f("uq_routes_host_path_prefix")),
    )
    op.create_index(op.f("ix_routes_service"), "routes", ["service"])
    op.create_table(
        "changes",
        sa.Column("revision", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("service", _name(), nullable=False),
        sa.Column("env", _name(), nullable=False),
        sa.Column("group", sa.String(length=16), nullable=False),
        sa.Column("instance", sa.JSON(), nullable=False),
        _at("at"),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_service_env", "changes", ["service", "env"])
    op.create_index(op.f("ix_changes_uid"), "changes", ["uid"])
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("resource_version", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("service", _name(), nullable=False),
        sa.Column("env", _name(), nullable=False),
        sa.Column("subscriber", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _at("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal")),
    )
    op.create_index(op.f("ix_journal_subscriber"), "journal", ["subscriber"])
    op.create_index("ix_journal_uid_resource_version", "journal", ["uid", "resource_version"])


def downgrade() -> None:
    for table in ("journal", "changes", "routes", "instances", "environments", "services"):
        op.drop_table(table)
