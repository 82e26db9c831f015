"""The authorization tables: the grants in force (with their reasons) and the journal of every change.

In the catalog's database and Alembic chain (revision 0005), on a metadata of their own like the
accounts' tables: authorization sits above the catalog. ``grants`` is what the API's "why does
this IP hold this grant" reads (the monitor process writes it, the server reads it); ``journal``
is append-only and also says which MySQL users and interfaces BizCloud ever granted, which is
what it owns and may revoke. No column ever holds a password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bizcloud.catalog.models import NAMING_CONVENTION, UtcDateTime, utcnow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON(),
                                                     list[Any]: JSON()}


class GrantRow(Base):
    """One desired grant and whether the target holds it yet (``applied``) or not (``pending``)."""

    __tablename__ = "authz_grants"
    __table_args__ = (UniqueConstraint("kind", "target", "subject_ip", "grant"),
                      Index("ix_authz_grants_subject_ip", "subject_ip"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(255))
    subject_ip: Mapped[str] = mapped_column(String(64))
    grant: Mapped[str] = mapped_column(String(512))      # Grant.detail.text()
    detail: Mapped[dict[str, Any]] = mapped_column()      # the detail's fields (user, database, port …)
    services: Mapped[str] = mapped_column(String(512))   # comma-separated, for ?service= filters
    reasons: Mapped[list[Any]] = mapped_column()          # [Reason as dict, …]
    state: Mapped[str] = mapped_column(String(8))         # applied | pending
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JournalRow(Base):
    """One grant, revoke, failure or refusal, with the trigger and the reasons at that moment."""

    __tablename__ = "authz_journal"
    __table_args__ = (Index("ix_authz_journal_subject_ip", "subject_ip"),
                      Index("ix_authz_journal_kind_target", "kind", "target"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(8))        # grant | revoke | refuse
    outcome: Mapped[str] = mapped_column(String(8))       # ok | pending | refused
    kind: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(255))
    subject_ip: Mapped[str] = mapped_column(String(64))
    grant: Mapped[str] = mapped_column(String(512))
    detail: Mapped[dict[str, Any]] = mapped_column()
    reasons: Mapped[list[Any]] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(255))     # "UP demo-api-7f… (uid)", "resync", "config 12"
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
