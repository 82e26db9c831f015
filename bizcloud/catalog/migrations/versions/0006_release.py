"""Release: history, gray releases and operation locks (``bizcloud.release.models``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

The tables belong to ``bizcloud.release`` (their own metadata, above the catalog);
``tests/release/test_store.py`` checks this revision against those models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _name(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(length=63), nullable=False)


def upgrade() -> None:
    op.create_table(
        "release_history",
        sa.Column("id", sa.Integer(), nullable=False),
        _name("service"),
        _name("env"),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        _at("started_at"),
        _at("finished_at", nullable=True),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_history")),
    )
    op.create_index("ix_release_history_service_env", "release_history", ["service", "env"])
    op.create_table(
        "gray_releases",
        _name("service"),
        _name("env"),
        sa.Column("image", sa.String(length=512), nullable=False),
        _name("release"),
        sa.Column("base_image", sa.String(length=512), nullable=False),
        _name("base_release"),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("whitelist", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_by", sa.String(length=128), nullable=False),
        _at("started_at"),
        _at("updated_at"),
        _at("next_step_at", nullable=True),
        sa.PrimaryKeyConstraint("service", "env", name=op.f("pk_gray_releases")),
    )
    op.create_table(
        "release_locks",
        _name("service"),
        _name("env"),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        _at("acquired_at"),
        _at("expires_at"),
        sa.PrimaryKeyConstraint("service", "env", name=op.f("pk_release_locks")),
    )


def downgrade() -> None:
    op.drop_table("release_locks")
    op.drop_table("gray_releases")
    op.drop_index("ix_release_history_service_env", table_name="release_history")
    op.drop_table("release_history")
