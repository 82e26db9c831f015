"""Config versions on the catalog's database: apply, read, history, diff, delete, and the revision to poll.

Sits between the API/CLI (uploads) and the authorization planner (``latest()``). An upload is read
and validated by ``documents.read``; then, in one writing transaction, checked against everything
already stored: each service's references against the inventory (the new one when the upload
carries it, and then every stored service too, so an inventory change cannot strand a service),
and one MySQL user on one cluster belongs to one service. All documents of an upload are stored,
or none. A document equal (canonically) to the current version is "unchanged" and stores nothing.
Returns plain values, never rows.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bizcloud.catalog.db import writer
from bizcloud.configcenter import documents
from bizcloud.configcenter.documents import INVENTORY, Document
from bizcloud.configcenter.errors import ConfigError, ConfigNotFound
from bizcloud.configcenter.models import AUTHOR_LENGTH, COMMENT_LENGTH, ConfigVersion
from bizcloud.configcenter.schema import Inventory, ServiceConfig, check_references
from bizcloud.errors import BizCloudError

Status = Literal["created", "unchanged"]


@dataclass(frozen=True)
class VersionOut:
    kind: str
    name: str
    version: int
    deleted: bool
    author: str
    comment: str
    created_at: datetime
    yaml: str
    canonical: str

    @property
    def config(self) -> dict[str, Any] | None:
        data = json.loads(self.canonical)
        return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    version: int
    status: Status


@dataclass(frozen=True)
class Diff:
    name: str
    old: int
    new: int
    text: str


@dataclass(frozen=True)
class Snapshot:
    """Every live config at one revision: what the planner and the graph work from."""

    revision: int
    inventory: Inventory
    services: dict[str, ServiceConfig]
    versions: dict[str, int]  # name -> version, the inventory's under "inventory"


def _out(row: ConfigVersion) -> VersionOut:
    return VersionOut(kind=row.kind, name=row.name, version=row.version, deleted=row.deleted,
                      author=row.author, comment=row.comment, created_at=row.created_at, yaml=row.yaml,
                      canonical=row.canonical)


def _config(row: ConfigVersion) -> ServiceConfig | Inventory:
    model = documents.KINDS[row.kind]
    return model.model_validate(json.loads(row.canonical))


class ConfigStore:
    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        try:
            with (self._write if write else self._read)() as session, session.begin():
                yield session
        except IntegrityError as e:
            raise ConfigError("another upload changed the same config at the same moment",
                              ["(upload): nothing was stored"], hint="apply again") from e
        except SQLAlchemyError as e:
            raise BizCloudError(f"the config center's database failed: {type(e).__name__}",
                                hint="check that the catalog database is reachable") from e

    # --- reads ---------------------------------------------------------------------------------

    def revision(self) -> int:
        """Grows with every stored version (tombstones too): poll it to learn that configs changed."""
        with self._session() as s:
            return int(s.scalar(select(func.max(ConfigVersion.id))) or 0)

    @staticmethod
    def _latest_rows(s: Session) -> dict[str, ConfigVersion]:
        newest = (select(ConfigVersion.name, func.max(ConfigVersion.version).label("v"))
                  .group_by(ConfigVersion.name).subquery())
        rows = s.scalars(select(ConfigVersion).join(
            newest, (ConfigVersion.name == newest.c.name) & (ConfigVersion.version == newest.c.v)))
        return {row.name: row for row in rows}

    def latest(self) -> Snapshot:
        """The live inventory (empty if none) and every live service config."""
        with self._session() as s:
            revision = int(s.scalar(select(func.max(ConfigVersion.id))) or 0)
            rows = [r for r in self._latest_rows(s).values() if not r.deleted]
        inventory, services = Inventory(), {}
        for row in rows:
            config = _config(row)
            if isinstance(config, Inventory):
                inventory = config
            else:
                services[row.name] = config
        return Snapshot(revision=revision, inventory=inventory, services=services,
                        versions={r.name: r.version for r in rows})

    def list_latest(self) -> list[VersionOut]:
        """The current version of each live config, the inventory first, then services by name."""
        with self._session() as s:
            rows = [r for r in self._latest_rows(s).values() if not r.deleted]
        rows.sort(key=lambda r: (r.kind != "Inventory", r.name))
        return [_out(r) for r in rows]

    def history(self, name: str) -> list[VersionOut]:
        with self._session() as s:
            rows = list(s.scalars(select(ConfigVersion).where(ConfigVersion.name == name)
                                  .order_by(ConfigVersion.version)))
        if not rows:
            raise ConfigNotFound(f"no config named {name!r}", hint="`bizcloud config ls` lists the configs")
        return [_out(r) for r in rows]

    def get(self, name: str, version: int | None = None) -> VersionOut:
        """Version ``version`` of ``name`` (a tombstone too), or the current one (404 once deleted)."""
        versions = self.history(name)
        if version is None:
            current = versions[-1]
            if current.deleted:
                raise ConfigNotFound(f"config {name!r} was deleted in version {current.version}",
                                     hint=f"`bizcloud config history {name}` shows the earlier versions")
            return current
        for v in versions:
            if v.version == version:
                return v
        raise ConfigNotFound(f"config {name!r} has no version {version}",
                             hint=f"its versions are 1 to {versions[-1].version}")

    def diff(self, name: str, old: int | None = None, new: int | None = None) -> Diff:
        """A unified diff of the canonical YAML of two versions (default: the newest against the one before).

        Version 0 is "nothing", so ``old=0`` shows a config's first version as all additions.
        """
        versions = self.history(name)
        new = versions[-1].version if new is None else new
        old = max(new - 1, 0) if old is None else old
        texts = ["" if n == 0 else documents.canonical_yaml(self.get(name, n).canonical) for n in (old, new)]
        old_lines, new_lines = (t.splitlines(keepends=True) for t in texts)
        text = "".join(difflib.unified_diff(old_lines, new_lines, fromfile=f"{name} v{old}",
                                            tofile=f"{name} v{new}"))
        return Diff(name=name, old=old, new=new, text=text)

    # --- writes --------------------------------------------------------------------------------

    def apply(self, text: str, *, author: str, comment: str = "") -> list[Applied]:
        """Validate and store every document of ``text``, all or none; ConfigError lists each problem."""
        docs = documents.read(text)
        with self._session(write=True) as s:
            current = self._latest_rows(s)
            _check(docs, current)
            results = []
            for doc in docs:
                row = current.get(doc.name)
                if row is not None and not row.deleted and row.canonical == doc.canonical:
                    results.append(Applied(kind=doc.kind, name=doc.name, version=row.version,
                                           status="unchanged"))
                    continue
                version = row.version + 1 if row is not None else 1
                s.add(ConfigVersion(kind=doc.kind, name=doc.name, version=version, deleted=False,
                                    yaml=doc.text, canonical=doc.canonical, author=author[:AUTHOR_LENGTH],
                                    comment=comment[:COMMENT_LENGTH]))
                results.append(Applied(kind=doc.kind, name=doc.name, version=version, status="created"))
        return results

    def delete(self, name: str, *, author: str, comment: str = "") -> VersionOut:
        """A tombstone version: the config stops counting, its history stays."""
        with self._session(write=True) as s:
            current = self._latest_rows(s)
            row = current.get(name)
            if row is None or row.deleted:
                raise ConfigNotFound(f"no live config named {name!r}",
                                     hint="`bizcloud config ls` lists the configs")
            if row.kind == "Inventory":
                problems = [f"inventory: service {svc!r} would break — {p}"
                            for svc, config in _live_services(current).items()
                            for p in check_references(config, Inventory())]
                if problems:
                    raise ConfigError("the inventory is still in use", problems,
                                      hint="remove those dependencies (or the services) first")
            tombstone = ConfigVersion(kind=row.kind, name=name, version=row.version + 1, deleted=True,
                                      yaml="", canonical="null", author=author[:AUTHOR_LENGTH],
                                      comment=comment[:COMMENT_LENGTH])
            s.add(tombstone)
            s.flush()
            return _out(tombstone)


def _live_services(rows: dict[str, ConfigVersion]) -> dict[str, ServiceConfig]:
    return {n: c for n, r in rows.items()
            if r.kind == "Service" and not r.deleted and isinstance(c := _config(r), ServiceConfig)}


def _check(docs: Sequence[Document], current: dict[str, ConfigVersion]) -> None:
    """Refuse the upload if, once stored, a reference would dangle or a MySQL user had two services."""
    several = len(docs) > 1
    prefix = {d.name: f"document {i} ({d.name}): " if several else "" for i, d in enumerate(docs, start=1)}
    uploaded_inventory = next((d.config for d in docs if isinstance(d.config, Inventory)), None)
    stored_inventory = current.get(INVENTORY)
    inventory = uploaded_inventory or (
        _config(stored_inventory) if stored_inventory and not stored_inventory.deleted else Inventory())
    assert isinstance(inventory, Inventory)
    services = _live_services(current)
    uploaded = {d.name: d.config for d in docs if isinstance(d.config, ServiceConfig)}
    services.update(uploaded)
    problems: list[str] = []
    for name, config in services.items():
        if name in uploaded:
            problems.extend(prefix[name] + p for p in check_references(config, inventory))
        elif uploaded_inventory is not None:
            problems.extend(f"{prefix[INVENTORY]}inventory: service {name!r} would break — {p}"
                            for p in check_references(config, inventory))
    owners: dict[tuple[str, str], list[str]] = {}
    for name in sorted(services, key=lambda n: (n in uploaded, n)):  # stored claims first
        for dep in services[name].dependencies.mysql:
            owners.setdefault((dep.cluster, dep.user), []).append(name)
    for name, config in uploaded.items():
        for i, dep in enumerate(config.dependencies.mysql):
            others = [o for o in owners[(dep.cluster, dep.user)] if o != name]
            if others:
                problems.append(f"{prefix[name]}dependencies.mysql[{i}].user: {dep.user!r} on cluster "
                                f"{dep.cluster!r} belongs to service {others[0]!r} — one MySQL user serves "
                                f"one service; choose another user (or remove it from {others[0]!r} first)")
    if problems:
        raise ConfigError("the config was refused" if not several else "the configs were refused", problems)
