"""Per-service gray policies (ratio, whitelist, fallback, where the user ID comes from).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

ROUTE and GRAY changes reuse the ``changes`` table (an empty ``group``), so only the policy
table is new. Checked against the models by ``tests/catalog/test_migrations.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gray_policies",
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("ratio", sa.Float(), nullable=False),
        sa.Column("whitelist", sa.JSON(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("uid_source", sa.String(length=16), nullable=False),
        sa.Column("uid_name", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("uid_source IN ('header', 'cookie', 'query')",
                           name=op.f("ck_gray_policies_uid_source")),
        sa.CheckConstraint("ratio >= 0 AND ratio <= 100", name=op.f("ck_gray_policies_ratio")),
        sa.ForeignKeyConstraint(["service"], ["services.name"],
                                name=op.f("fk_gray_policies_service_services")),
        sa.PrimaryKeyConstraint("service", name=op.f("pk_gray_policies")),
    )


def downgrade() -> None:
    op.drop_table("gray_policies")
