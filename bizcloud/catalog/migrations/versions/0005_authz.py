"""Authorization: the grants in force and the journal (``bizcloud.authz.models``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

The tables belong to ``bizcloud.authz`` (their own metadata, above the catalog);
``tests/authz/test_journal.py`` checks this revision against those models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "authz_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("subject_ip", sa.String(length=64), nullable=False),
        sa.Column("grant", sa.String(length=512), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("services", sa.String(length=512), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _at("since"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authz_grants")),
        sa.UniqueConstraint("kind", "target", "subject_ip", "grant",
                            name=op.f("uq_authz_grants_kind_target_subject_ip_grant")),
    )
    op.create_index("ix_authz_grants_subject_ip", "authz_grants", ["subject_ip"])
    op.create_table(
        "authz_journal",
        sa.Column("id", sa.Integer(), nullable=False),
        _at("at"),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("subject_ip", sa.String(length=64), nullable=False),
        sa.Column("grant", sa.String(length=512), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.String(length=255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authz_journal")),
    )
    op.create_index("ix_authz_journal_subject_ip", "authz_journal", ["subject_ip"])
    op.create_index("ix_authz_journal_kind_target", "authz_journal", ["kind", "target"])


def downgrade() -> None:
    op.drop_index("ix_authz_journal_kind_target", table_name="authz_journal")
    op.drop_index("ix_authz_journal_subject_ip", table_name="authz_journal")
    op.drop_table("authz_journal")
    op.drop_index("ix_authz_grants_subject_ip", table_name="authz_grants")
    op.drop_table("authz_grants")
