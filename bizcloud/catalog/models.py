"""The catalog's tables: what the service management center remembers between monitor events.

The monitor's events land here (instances, and one Change row per real change — the change stream
the gateway and other readers follow); people and scripts add services, environments and routes
through the API. Rows refer to services and environments by name, so a change row stays readable
after the things it names are gone. Only ``store.py`` queries these; nothing above it sees a row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are part of the schema that migrations must reproduce on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 63    # a DNS-1123 label: service and environment names become Kubernetes names
UID_LENGTH = 64     # a pod uid is a 36-character UUID; leave room for other sources


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


class Service(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Environment(Base):
    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Instance(Base):
    """A serving pod. Keyed by pod uid: a pod that comes back under the same name is a new instance."""

    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_service_env_group", "service", "env", "group"),
        CheckConstraint("\"group\" IN ('normal', 'gray')", name="group"),
    )

    uid: Mapped[str] = mapped_column(String(UID_LENGTH), primary_key=True)
    service: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("services.name"))
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("environments.name"))
    group: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str] = mapped_column(String(NAME_LENGTH))
    pod: Mapped[str] = mapped_column(String(253))
    ip: Mapped[str | None] = mapped_column(String(45))
    ports: Mapped[dict[str, Any]] = mapped_column(default=dict)
    node: Mapped[str | None] = mapped_column(String(253))
    release: Mapped[str | None] = mapped_column(String(128))
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    resource_version: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    revision: Mapped[int] = mapped_column(Integer)  # the Change that last wrote this row


class Route(Base):
    """An access-layer entry: requests for host + path prefix go to one service in one environment."""

    __tablename__ = "routes"
    __table_args__ = (UniqueConstraint("host", "path_prefix"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(253))
    path_prefix: Mapped[str] = mapped_column(String(255), default="/")
    service: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("services.name"), index=True)
    env: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("environments.name"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GrayPolicy(Base):
    """A service's gray split at the access layer and in the SOA layer (``bizcloud.usersplit.GrayPolicy``).

    One row per service, absent until someone sets one (absent = ratio 0, no whitelist, fallback
    on, user ID from the ``X-User-Id`` header). ``uid_source`` + ``uid_name`` tell the gateway where
    to read the user ID: a request header, a cookie or a query argument of that name.
    """

    __tablename__ = "gray_policies"
    __table_args__ = (
        CheckConstraint("uid_source IN ('header', 'cookie', 'query')", name="uid_source"),
        CheckConstraint("ratio >= 0 AND ratio <= 100", name="ratio"),
    )

    service: Mapped[str] = mapped_column(String(NAME_LENGTH), ForeignKey("services.name"), primary_key=True)
    ratio: Mapped[float] = mapped_column(Float, default=0.0)
    whitelist: Mapped[list[str]] = mapped_column(JSON, default=list)
    fallback: Mapped[bool] = mapped_column(Boolean, default=True)
    uid_source: Mapped[str] = mapped_column(String(16), default="header")
    uid_name: Mapped[str] = mapped_column(String(128), default="X-User-Id")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Change(Base):
    """One entry of the change stream. ``revision`` only grows, and is never reused (AUTOINCREMENT).

    Instance changes (UP, DOWN, CHANGED) carry the instance; ROUTE and GRAY changes (a route added
    or removed, a service's gray policy set) carry the route or the policy in ``instance``, an
    empty ``group``, and a ``uid`` naming what changed, so the gateway follows one stream.
    """

    __tablename__ = "changes"
    __table_args__ = (
        Index("ix_changes_service_env", "service", "env"),
        {"sqlite_autoincrement": True},
    )

    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(16))
    uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    service: Mapped[str] = mapped_column(String(NAME_LENGTH))
    env: Mapped[str] = mapped_column(String(NAME_LENGTH))
    group: Mapped[str] = mapped_column(String(16))
    instance: Mapped[dict[str, Any]] = mapped_column()  # the instance as it is after (DOWN: before)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class JournalEntry(Base):
    """The dispatcher's record of one event's outcome at one subscriber, for auditing and replay."""

    __tablename__ = "journal"
    __table_args__ = (Index("ix_journal_uid_resource_version", "uid", "resource_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    resource_version: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(NAME_LENGTH))
    env: Mapped[str] = mapped_column(String(NAME_LENGTH))
    subscriber: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)
