"""The release tables: history of every release operation, gray releases, and per-service operation locks.

In the catalog's database and Alembic chain (revision 0006), on a metadata of their own like the
authorization's tables: release sits above the catalog. ``release_history`` is append-only (a row
is finished once, when its operation ends); ``gray_releases`` holds one row per service and
environment, the ``GrayState`` the gray controller drives; ``release_locks`` holds at most one
operation per service and environment, so two people (or a person and the controller) never
deploy, scale or move a gray release of one service at the same time. Only ``store.py`` queries
these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Float, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bizcloud.catalog.models import NAME_LENGTH, NAMING_CONVENTION, UtcDateTime, utcnow

IMAGE_LENGTH = 512
USER_LENGTH = 128


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON(),
                                                     list[Any]: JSON()}


class HistoryRow(Base):
    """One release operation: who asked what of which service, when it ended and how."""

    __tablename__ = "release_history"
    __table_args__ = (Index("ix_release_history_service_env", "service", "env"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(NAME_LENGTH))
    env: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(32))       # deploy | scale | env-create | gray-start …
    detail: Mapped[dict[str, Any]] = mapped_column()
    user: Mapped[str] = mapped_column(String(USER_LENGTH))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    outcome: Mapped[str] = mapped_column(String(8))        # ok | failed | refused | running
    message: Mapped[str] = mapped_column(Text, default="")


class GrayRow(Base):
    """A service+env's gray release (``gray_plan.GrayState``), kept after it ends until the next one."""

    __tablename__ = "gray_releases"

    service: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    image: Mapped[str] = mapped_column(String(IMAGE_LENGTH))
    release: Mapped[str] = mapped_column(String(NAME_LENGTH))
    base_image: Mapped[str] = mapped_column(String(IMAGE_LENGTH))
    base_release: Mapped[str] = mapped_column(String(NAME_LENGTH))
    replicas: Mapped[int] = mapped_column(Integer)
    ratio: Mapped[float] = mapped_column(Float)
    steps: Mapped[list[Any]] = mapped_column()
    step_index: Mapped[int] = mapped_column(Integer)
    interval_s: Mapped[int] = mapped_column(Integer)
    whitelist: Mapped[list[Any]] = mapped_column()
    thresholds: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(16))         # gray_plan.Phase
    message: Mapped[str] = mapped_column(Text, default="")
    started_by: Mapped[str] = mapped_column(String(USER_LENGTH))
    started_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    next_step_at: Mapped[datetime | None] = mapped_column(nullable=True)


class LockRow(Base):
    """The operation running on a service+env; ``token`` tells its holder's release from a successor's."""

    __tablename__ = "release_locks"

    service: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(32))
    acquired_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
