"""Config center: every version of every service config and of the inventory.

The model is ``bizcloud.configcenter.models``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

The table belongs to ``bizcloud.configcenter`` (its own metadata, one layer above the catalog);
``tests/configcenter/test_store.py`` checks this revision against that model.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "config_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('Service', 'Inventory')", name=op.f("ck_config_versions_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_config_versions_name_version")),
    )


def downgrade() -> None:
    op.drop_table("config_versions")
