"""The config center's table: every version of every config, tombstones included (revision 0004).

One row per upload that changed something: a service config (kind ``Service``, named after the
service) or the one inventory (kind ``Inventory``, named ``inventory``). Versions count 1, 2, 3 …
per name; a deletion is a version too (``deleted``), so history survives it. The row id only
grows, so ``max(id)`` is the cheap "did any config change" revision the authorization worker
polls. Like the accounts' tables, these live in the catalog's database and Alembic chain but on
a metadata of their own; only ``store.py`` queries them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Boolean, CheckConstraint, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bizcloud.catalog.models import NAMING_CONVENTION, UtcDateTime, utcnow

NAME_LENGTH = 64
AUTHOR_LENGTH = 64
COMMENT_LENGTH = 512


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime()}


class ConfigVersion(Base):
    __tablename__ = "config_versions"
    __table_args__ = (
        CheckConstraint("kind IN ('Service', 'Inventory')", name="kind"),
        UniqueConstraint("name", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    version: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    yaml: Mapped[str] = mapped_column(Text)             # the document as uploaded ("" for a tombstone)
    canonical: Mapped[str] = mapped_column(Text)        # canonical JSON of the validated model ("null")
    author: Mapped[str] = mapped_column(String(AUTHOR_LENGTH))
    comment: Mapped[str] = mapped_column(String(COMMENT_LENGTH), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
