"""The accounts' tables: users, their tokens (console sessions and API tokens) and the audit trail.

They live in the catalog's database and Alembic chain (revision 0003), but on a metadata of their
own: accounts sit a layer above the catalog, and the catalog's metadata must not change with
whatever happened to be imported. The naming convention and the UTC timestamp type are the
catalog's, so both halves of the schema read alike. Only ``store.py`` queries these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bizcloud.catalog.models import NAMING_CONVENTION, UtcDateTime, utcnow

USER_NAME_LENGTH = 64


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'developer', 'ops', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(USER_NAME_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    """A bearer secret: a console session (cookie) or an API token (CLI, machines). Only its hash is kept."""

    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint("kind IN ('session', 'api')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of a 256-bit secret
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class AuditRecord(Base):
    """One API mutation or one shell session: who, what, on which target, from when to when, outcome."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(USER_NAME_LENGTH))  # "anonymous" when nobody authenticated
    action: Mapped[str] = mapped_column(String(64))             # "POST /api/v1/services", "shell"
    target: Mapped[str] = mapped_column(String(512))
    status: Mapped[int | None] = mapped_column(Integer)          # HTTP status, or None while a shell runs
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recording: Mapped[str | None] = mapped_column(Text)          # asciicast file name, for shells
    client: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
