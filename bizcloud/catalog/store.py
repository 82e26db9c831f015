"""The catalog's only door to SQL: monitor events in, services/instances/changes out.

Below it sit the tables (``models.py``) on an engine from ``db.py``; above it the monitor's
subscriber (``subscriber.py``, which calls ``apply_event`` from a worker thread) and the REST API
(``api.py``). It is synchronous on purpose: every method is one short transaction, run in a thread
by async callers. It returns values (frozen dataclasses and the monitor's ``Instance``), never ORM
rows, so nothing above it can lazy-load outside a transaction, and it raises the catalog's domain
errors, never SQLAlchemy's.

Converge, don't replay: ``apply_event`` compares the event with what the catalog holds and writes
(one Change row, one revision) only when the catalog really changes, so at-least-once delivery,
retries and re-syncs after a relist leave the change stream free of duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from bizcloud.catalog import models
from bizcloud.catalog.db import write_lock, writer
from bizcloud.catalog.errors import AlreadyExists, CatalogUnavailable, InUse, NotFound, WriteBusy
from bizcloud.catalog.policies import ConfigChange, GrayPolicyOut, UidSource, change_type, invalid_address
from bizcloud.monitor.model import EventType, Group, Instance, InstanceEvent, PodUid

__all__ = ["CatalogStore", "ChangeOut", "Committed", "EnvironmentOut", "GrayPolicyOut", "RouteOut",
           "ServiceOut", "Snapshot", "snapshot_of"]

log = logging.getLogger(__name__)

_PG_CHANGE_LOCK = 0x62697A63  # "bizc": serializes change writers across processes on PostgreSQL


@dataclass(frozen=True)
class ServiceOut:
    name: str
    description: str
    owner: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EnvironmentOut:
    name: str
    namespace: str
    created_at: datetime


@dataclass(frozen=True)
class RouteOut:
    id: int
    host: str
    path_prefix: str
    service: str
    env: str
    created_at: datetime


@dataclass(frozen=True)
class ChangeOut:
    """One entry of the change stream: what happened to one instance, at which revision."""

    revision: int
    type: EventType | ConfigChange
    uid: PodUid
    service: str
    env: str
    group: Group | None  # None for ROUTE and GRAY changes
    instance: dict[str, Any]  # snapshot (see ``snapshot_of``): after the change; for DOWN, before it;
    at: datetime              # for ROUTE the route (``deleted`` when removed), for GRAY the policy


@dataclass(frozen=True)
class Committed:
    """The instance changes one transaction committed, in revision order, as the store's
    ``on_commit`` hook receives them: built into ``ChangeOut``s only when asked (``changes``),
    because a relist commits thousands that the hook's readers (the gateway push) may skip."""

    applied: Sequence[tuple[EventType, Instance]]
    revisions: Sequence[int]
    at: datetime

    @property
    def revision(self) -> int:
        """The newest revision committed."""
        return self.revisions[-1]

    def changes(self) -> list[ChangeOut]:
        """The changes as the change stream serves them. Purely computational."""
        return [ChangeOut(revision=revision, type=kind, uid=instance.uid, service=instance.service,
                          env=instance.env, group=instance.group, instance=snapshot_of(instance), at=self.at)
                for (kind, instance), revision in zip(self.applied, self.revisions, strict=True)]


@dataclass(frozen=True)
class Snapshot:
    """Instances and the revision they are current at, read together, so a reader can resume from it."""

    revision: int
    instances: list[Instance]


def snapshot_of(instance: Instance) -> dict[str, Any]:
    """The JSON form of an instance, as stored in a Change row and served by the API."""
    return {
        "uid": instance.uid, "service": instance.service, "env": instance.env, "group": instance.group.value,
        "namespace": instance.namespace, "pod": instance.pod, "ip": instance.ip,
        "ports": dict(instance.ports), "ready": instance.ready, "node": instance.node,
        "release": instance.release,
    }


class CatalogStore:
    """Services, environments, routes, instances and the change stream on one SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, on_commit: Callable[[Committed], None] | None = None) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._writer_nowait = writer(engine, nowait=True)
        self._known: tuple[set[str], set[str]] = (set(), set())   # services, environments seen to exist
        # Told of every commit of instance changes, on the committing thread, in revision order
        # (it runs under the write lock): the monitor's wake-ups and gateway pushes start from the
        # commit itself, with no hop through an event loop or a read of what was just written.
        self._on_commit = on_commit
        # Revisions must become visible in the order they are handed out, or a reader resuming
        # after revision N could skip a smaller one committed later. SQLite serializes writers by
        # itself; this lock does it for the threads of one process, the advisory lock for PostgreSQL.
        # On SQLite it is the database's one write lock (``db.write_lock``), which every writing
        # session takes: the journal and the grants queue behind a commit instead of polling.
        self._change_lock = write_lock(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def local(self) -> bool:
        """The database is a file of this host (SQLite): a short write costs no network round trip,
        so the monitor may run one on its event loop (``apply_events(wait=False)``)."""
        return self._engine.dialect.name == "sqlite"

    @contextmanager
    def _session(self, *, write: bool = False, nowait: bool = False,
                 on_conflict: Exception | None = None) -> Iterator[Session]:
        bind = (self._writer_nowait if nowait else self._writer) if write else self._engine
        try:
            with self._change_lock if write else nullcontext(), \
                    Session(bind, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as e:
            if nowait and "locked" in str(e.orig):
                raise WriteBusy("another process holds the catalog's write lock", hint="retry") from e
            raise CatalogUnavailable(f"catalog database error: {e}", hint="retry; check the database") from e
        except IntegrityError as e:
            raise (on_conflict or CatalogUnavailable(f"conflicting concurrent write: {e.orig}",
                                                     hint="retry")) from e
        except SQLAlchemyError as e:
            raise CatalogUnavailable(f"catalog database error: {e}", hint="retry; check the database") from e

    # --- services -------------------------------------------------------------------------------

    def create_service(self, *, name: str, description: str = "", owner: str = "") -> ServiceOut:
        exists = AlreadyExists(f"service {name!r} already exists")
        with self._session(write=True, on_conflict=exists) as s:
            if _service_row(s, name) is not None:
                raise exists
            row = models.Service(name=name, description=description, owner=owner)
            s.add(row)
            s.flush()
            return _service_out(row)

    def get_service(self, *, name: str) -> ServiceOut:
        with self._session() as s:
            return _service_out(_require_service(s, name))

    def list_services(self) -> list[ServiceOut]:
        with self._session() as s:
            return [_service_out(r) for r in s.scalars(select(models.Service).order_by(models.Service.name))]

    def update_service(self, *, name: str, description: str | None = None,
                       owner: str | None = None) -> ServiceOut:
        with self._session(write=True) as s:
            row = _require_service(s, name)
            if description is not None:
                row.description = description
            if owner is not None:
                row.owner = owner
            s.flush()
            return _service_out(row)

    def delete_service(self, *, name: str) -> None:
        """Refused while instances or routes still point at the service (the monitor re-adds it)."""
        in_use = InUse(f"service {name!r} still has instances or routes",
                       hint="scale it to zero and delete its routes first")
        with self._session(write=True, on_conflict=in_use) as s:
            row = _require_service(s, name)
            for table in (models.Instance, models.Route):
                if s.scalar(select(func.count()).select_from(table).where(table.service == name)):
                    raise in_use
            s.execute(delete(models.GrayPolicy).where(models.GrayPolicy.service == name))
            s.flush()
            s.delete(row)

    # --- environments and routes ----------------------------------------------------------------

    def create_environment(self, *, name: str, namespace: str | None = None) -> EnvironmentOut:
        exists = AlreadyExists(f"environment {name!r} already exists")
        with self._session(write=True, on_conflict=exists) as s:
            if _env_row(s, name) is not None:
                raise exists
            row = models.Environment(name=name, namespace=namespace or f"bc-{name}")
            s.add(row)
            s.flush()
            return _env_out(row)

    def list_environments(self) -> list[EnvironmentOut]:
        with self._session() as s:
            stmt = select(models.Environment).order_by(models.Environment.name)
            return [_env_out(r) for r in s.scalars(stmt)]

    def create_route(self, *, host: str, path_prefix: str, service: str, env: str) -> RouteOut:
        exists = AlreadyExists(f"route {host}{path_prefix} already exists")
        with self._change_lock, self._session(write=True, on_conflict=exists) as s:
            _require_service(s, service)
            if _env_row(s, env) is None:
                raise NotFound(f"environment {env!r} not found")
            taken = select(models.Route).where(models.Route.host == host,
                                               models.Route.path_prefix == path_prefix)
            if s.scalar(taken) is not None:
                raise exists
            row = models.Route(host=host, path_prefix=path_prefix, service=service, env=env)
            s.add(row)
            s.flush()
            out = _route_out(row)
            self._config_change(s, ConfigChange.ROUTE, out.service, out.env, _route_json(out))
            return out

    def list_routes(self, *, service: str | None = None) -> list[RouteOut]:
        with self._session() as s:
            stmt = select(models.Route).order_by(models.Route.host, models.Route.path_prefix)
            if service is not None:
                stmt = stmt.where(models.Route.service == service)
            return [_route_out(r) for r in s.scalars(stmt)]

    def delete_route(self, *, route_id: int) -> None:
        with self._change_lock, self._session(write=True) as s:
            row = s.get(models.Route, route_id)
            if row is None:
                raise NotFound(f"route {route_id} not found")
            out = _route_out(row)
            s.delete(row)
            self._config_change(s, ConfigChange.ROUTE, out.service, out.env,
                                {**_route_json(out), "deleted": True})

    # --- gray policies --------------------------------------------------------------------------

    def get_gray(self, *, service: str) -> GrayPolicyOut:
        """The service's gray policy; the defaults (ratio 0, fallback on) until one is set."""
        with self._session() as s:
            _require_service(s, service)
            row = s.get(models.GrayPolicy, service)
            return GrayPolicyOut(service=service) if row is None else _gray_out(row)

    def list_gray(self) -> list[GrayPolicyOut]:
        """Every policy that was set (services without a row use the defaults)."""
        with self._session() as s:
            stmt = select(models.GrayPolicy).order_by(models.GrayPolicy.service)
            return [_gray_out(r) for r in s.scalars(stmt)]

    def set_gray(self, *, policy: GrayPolicyOut) -> GrayPolicyOut:
        """Store the policy and announce it on the change stream (a GRAY change), in one transaction."""
        with self._change_lock, self._session(write=True) as s:
            _require_service(s, policy.service)
            row = s.get(models.GrayPolicy, policy.service)
            if row is None:
                row = models.GrayPolicy(service=policy.service)
                s.add(row)
            row.ratio, row.fallback = policy.ratio, policy.fallback
            row.whitelist = sorted(set(policy.whitelist))
            row.uid_source, row.uid_name = UidSource(policy.uid_source).value, policy.uid_name
            row.updated_at = models.utcnow()
            s.flush()
            out = _gray_out(row)
            self._config_change(s, ConfigChange.GRAY, out.service, "", out.to_json())
            return out

    def _config_change(self, s: Session, kind: ConfigChange, service: str, env: str,
                       payload: dict[str, Any]) -> None:
        """One ROUTE or GRAY row on the change stream, in the caller's transaction (under the change lock)."""
        self._lock_changes(s)
        s.add(models.Change(type=kind.value, uid=f"{kind.value.lower()}:{service}", service=service,
                            env=env, group="", instance=payload, at=models.utcnow()))
        s.flush()

    # --- instances and the change stream ---------------------------------------------------------

    def apply_event(self, *, event: InstanceEvent) -> int | None:
        """Make the catalog agree with ``event``; the new revision, or None when it already did."""
        return self.apply_events(events=[event])[0]

    def apply_events(self, *, events: Sequence[InstanceEvent], wait: bool = True) -> list[int | None]:
        """Apply ``events`` in order, in one transaction; per event, its revision or None.

        The Change row says what happened to the catalog, which may differ from the event: an UP
        for a known, unchanged instance writes nothing; a CHANGED for an unknown one is an UP; an
        instance that moved to another service, environment or group leaves one (DOWN) and joins
        the other (UP), so readers that follow one upstream see both sides. One transaction for
        many events is what lets the monitor keep up with thousands of pods: the rows are read
        in a few queries and written in one flush, instead of several round trips per event.

        With ``wait=False`` it raises ``WriteBusy``, having done nothing, when another thread or
        process holds the write lock, instead of waiting for it (the monitor's event loop runs
        small commits itself that way, see ``subscriber.py``).
        """
        if not events:
            return []
        events = [_refuse_invalid_address(e) for e in events]
        if not self._change_lock.acquire(blocking=wait):
            raise WriteBusy("another thread is writing the catalog", hint="retry")
        try:
            outcome, committed = self._apply_events(events, nowait=not wait)
        except WriteBusy:   # nothing was begun: what it knows still stands
            raise
        except BaseException:   # rows it added are rolled back, or another process deleted one
            self._known = (set(), set())
            raise
        else:
            if committed is not None and self._on_commit is not None:
                self._announce(committed)
        finally:
            self._change_lock.release()
        return outcome

    def _announce(self, committed: Committed) -> None:
        """Tell ``on_commit``; the commit stands whatever happens there (readers poll as a fallback)."""
        assert self._on_commit is not None
        try:
            self._on_commit(committed)
        except Exception:
            log.exception("announcing catalog revision %s failed (readers will find it by polling)",
                          committed.revision)

    def _apply_events(self, events: list[InstanceEvent], *,
                      nowait: bool) -> tuple[list[int | None], Committed | None]:
        """``apply_events``' transaction: per event its revision or None, and what it committed."""
        with self._session(write=True, nowait=nowait) as s:
            self._lock_changes(s)
            stored = {PodUid(uid): _instance_of(row)
                      for uid, row in _rows_by_uid(s, {e.instance.uid for e in events}).items()}
            plan = _plan(events, stored)
            self._ensure_services_and_envs(s, plan.final.values())
            now = models.utcnow()
            revisions = _insert_changes(s, plan.changes, now)
            last_revision = {plan.changes[i][1].uid: revisions[i] for i in range(len(plan.changes))}
            gone = [uid for uid, instance in plan.final.items() if instance is None and uid in stored]
            if gone:
                s.execute(delete(models.Instance).where(models.Instance.uid.in_(gone)))
            rows = [_row_values(instance, resource_version=plan.resource_versions[uid],
                                revision=last_revision[uid], at=now)
                    for uid, instance in plan.final.items() if instance is not None and uid in last_revision]
            fresh = [r for r in rows if r[0] not in stored]
            if fresh:
                _insert_rows(s, _table(models.Instance), _INSTANCE_COLUMNS, fresh)
            changed = [dict(zip(_INSTANCE_COLUMNS, r, strict=True)) for r in rows if r[0] in stored]
            if changed:
                s.execute(update(models.Instance), changed)
        outcome = [None if n is None else revisions[n] for n in plan.outcome]
        return outcome, Committed(plan.changes, revisions, now) if revisions else None

    def _ensure_services_and_envs(self, s: Session, instances: Iterable[Instance | None]) -> None:
        """Create the Service and Environment rows instances point at, the first time one is seen.

        Names this store saw exist are not looked up again (two queries were a third of a small
        batch's commit); ``apply_events`` forgets them all when a transaction fails, so a service
        deleted meanwhile by another process (its instances' foreign key then fails) is made again
        on the retry."""
        live = [i for i in instances if i is not None]
        known_services, known_envs = self._known
        wanted_services = {i.service for i in live} - known_services
        wanted_envs = {i.env for i in live} - known_envs
        if not (wanted_services or wanted_envs):
            return
        services = _existing(s, models.Service.name, wanted_services) if wanted_services else set()
        envs = _existing(s, models.Environment.name, wanted_envs) if wanted_envs else set()
        for instance in live:
            if instance.service in wanted_services and instance.service not in services:
                s.add(models.Service(name=instance.service, description="", owner=""))
                services.add(instance.service)
            if instance.env in wanted_envs and instance.env not in envs:
                s.add(models.Environment(name=instance.env, namespace=instance.namespace))
                envs.add(instance.env)
        s.flush()
        known_services |= wanted_services
        known_envs |= wanted_envs

    def instances(self, *, service: str | None = None, env: str | None = None,
                  group: Group | None = None) -> list[Instance]:
        return self.snapshot(service=service, env=env, group=group).instances

    def snapshot(self, *, service: str | None = None, env: str | None = None,
                 group: Group | None = None) -> Snapshot:
        with self._session() as s:
            stmt = select(models.Instance).order_by(models.Instance.service, models.Instance.env,
                                                    models.Instance.group, models.Instance.pod)
            if service is not None:
                stmt = stmt.where(models.Instance.service == service)
            if env is not None:
                stmt = stmt.where(models.Instance.env == env)
            if group is not None:
                stmt = stmt.where(models.Instance.group == group.value)
            rows = [_instance_of(r) for r in s.scalars(stmt)]
            return Snapshot(revision=_latest(s), instances=rows)

    def all_instances(self) -> dict[PodUid, Instance]:
        """Every instance by pod uid. The reconciler reads this after every list, while the
        list's events are being committed, so it reads Core rows in no order: ORM entities cost
        20 µs a row (0.2 s at 10,000 pods)."""
        table = _table(models.Instance)
        with self._session() as s:
            return {PodUid(row.uid): _instance_of(row) for row in s.execute(select(table))}

    def changes_since(self, *, revision: int, limit: int = 1000) -> list[ChangeOut]:
        """Changes with a revision above ``revision``, oldest first, at most ``limit`` of them."""
        with self._session() as s:
            stmt = (select(models.Change).where(models.Change.revision > revision)
                    .order_by(models.Change.revision).limit(limit))
            return [_change_out(r) for r in s.scalars(stmt)]

    def latest_revision(self) -> int:
        """The newest committed revision; 0 for an empty stream."""
        with self._session() as s:
            return _latest(s)

    # --- journal --------------------------------------------------------------------------------

    def record_journal(self, *, event: InstanceEvent, subscriber: str, outcome: str, attempts: int,
                       error: str | None = None) -> None:
        self.record_journal_many(events=[event], subscriber=subscriber, outcome=outcome, attempts=attempts,
                                 error=error)

    def record_journal_many(self, *, events: Sequence[InstanceEvent], subscriber: str, outcome: str,
                            attempts: int, error: str | None = None) -> None:
        """One journal row per event, one transaction for all of them."""
        now = models.utcnow()
        with self._session(write=True) as s:
            _insert_rows(s, _table(models.JournalEntry), _JOURNAL_COLUMNS, [
                (event.uid, event.resource_version, event.type.value, event.instance.service,
                 event.instance.env, subscriber, outcome, attempts, error, now) for event in events])

    def journal(self, *, uid: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest journal entries (for one pod uid), newest first."""
        with self._session() as s:
            stmt = select(models.JournalEntry).order_by(models.JournalEntry.id.desc()).limit(limit)
            if uid is not None:
                stmt = stmt.where(models.JournalEntry.uid == uid)
            return [{"uid": r.uid, "resource_version": r.resource_version, "event_type": r.event_type,
                     "subscriber": r.subscriber, "outcome": r.outcome, "attempts": r.attempts,
                     "error": r.error, "at": r.at} for r in s.scalars(stmt)]

    def _lock_changes(self, session: Session) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CHANGE_LOCK})


# --- row <-> value helpers (inside a session) ------------------------------------------------------

def _service_row(s: Session, name: str) -> models.Service | None:
    return s.scalar(select(models.Service).where(models.Service.name == name))


def _require_service(s: Session, name: str) -> models.Service:
    row = _service_row(s, name)
    if row is None:
        raise NotFound(f"service {name!r} not found")
    return row


def _env_row(s: Session, name: str) -> models.Environment | None:
    return s.scalar(select(models.Environment).where(models.Environment.name == name))


def _latest(s: Session) -> int:
    return s.scalar(select(func.coalesce(func.max(models.Change.revision), 0))) or 0


@dataclass
class _Plan:
    """What a batch of events does to the catalog, worked out before anything is written."""

    changes: list[tuple[EventType, Instance]] = field(default_factory=list)   # in order
    outcome: list[int | None] = field(default_factory=list)    # per event: index into changes
    final: dict[PodUid, Instance | None] = field(default_factory=dict)        # per touched uid
    resource_versions: dict[PodUid, str] = field(default_factory=dict)


def _plan(events: Sequence[InstanceEvent], stored: dict[PodUid, Instance]) -> _Plan:
    """Replay ``events`` over the stored instances. Purely computational."""
    plan = _Plan()
    current: dict[PodUid, Instance | None] = dict(stored)

    def change(kind: EventType, instance: Instance) -> int:
        plan.changes.append((kind, instance))
        return len(plan.changes) - 1

    for event in events:
        new, uid = _comparable(event.instance), event.instance.uid
        old = current.get(uid)
        if event.type is EventType.DOWN:
            plan.outcome.append(None if old is None else change(EventType.DOWN, old))
            if old is not None:
                current[uid] = plan.final[uid] = None
            continue
        if old == new:
            plan.outcome.append(None)
            continue
        kind = EventType.UP if old is None else EventType.CHANGED
        if old is not None and (old.service, old.env, old.group) != (new.service, new.env, new.group):
            change(EventType.DOWN, old)
            kind = EventType.UP
        plan.outcome.append(change(kind, new))
        current[uid] = plan.final[uid] = new
        plan.resource_versions[uid] = event.resource_version
    return plan


def _refuse_invalid_address(event: InstanceEvent) -> InstanceEvent:
    """An instance whose address no gateway could use is not stored: its UP becomes a DOWN (logged)."""
    if event.type is EventType.DOWN:
        return event
    why = invalid_address(event.instance)
    if why is None:
        return event
    log.warning("refusing instance %s (%s/%s pod %s): %s", event.instance.uid, event.instance.service,
                event.instance.env, event.instance.pod, why)
    return InstanceEvent(type=EventType.DOWN, instance=event.instance,
                         resource_version=event.resource_version, observed_at=event.observed_at)


def _table(model: type[models.Base]) -> Table:
    """A model's Core table: bulk inserts through it skip the ORM's per-row bookkeeping (a third
    of the cost per row when the monitor writes thousands of instances at once)."""
    return cast(Table, model.__table__)


def _insert_changes(s: Session, changes: list[tuple[EventType, Instance]], now: datetime) -> list[int]:
    """Insert the Change rows in order; their revisions, in the same order."""
    if not changes:
        return []
    table = _table(models.Change)
    if s.get_bind().dialect.name != "sqlite":
        values = [{"type": kind.value, "uid": i.uid, "service": i.service, "env": i.env,
                   "group": i.group.value, "instance": snapshot_of(i), "at": now} for kind, i in changes]
        result = s.scalars(insert(table).returning(table.c.revision, sort_by_parameter_order=True), values)
        return list(result)
    # SQLite: SQLAlchemy cannot order RETURNING of a multi-row INSERT there, so the statement above
    # runs once per row (half the batch's time). This transaction holds the write lock (BEGIN
    # IMMEDIATE) and AUTOINCREMENT hands out growing revisions in statement order, so the rows
    # above the newest revision before the insert are exactly ours, in order.
    before = s.scalar(select(func.max(table.c.revision))) or 0
    _insert_rows(s, table, _CHANGE_COLUMNS, [(kind.value, i.uid, i.service, i.env, i.group.value,
                                              snapshot_of(i), now) for kind, i in changes])
    revisions = list(s.scalars(select(table.c.revision).where(table.c.revision > before)
                               .order_by(table.c.revision)))
    if len(revisions) != len(changes):  # another writer in our transaction: cannot happen, never guess
        raise CatalogUnavailable(f"expected {len(changes)} new changes, found {len(revisions)}", hint="retry")
    return revisions


_INSTANCE_COLUMNS = ("uid", "service", "env", "group", "namespace", "pod", "ip", "ports", "node", "release",
                     "ready", "resource_version", "revision", "updated_at")
_CHANGE_COLUMNS = ("type", "uid", "service", "env", "group", "instance", "at")
_JOURNAL_COLUMNS = ("uid", "resource_version", "event_type", "service", "env", "subscriber", "outcome",
                    "attempts", "error", "at")


def _row_values(instance: Instance, *, resource_version: str, revision: int, at: datetime) -> tuple[Any, ...]:
    """An instance row in ``_INSTANCE_COLUMNS`` order."""
    return (instance.uid, instance.service, instance.env, instance.group.value, instance.namespace,
            instance.pod, instance.ip, dict(instance.ports), instance.node, instance.release, instance.ready,
            resource_version, revision, at)


def _insert_rows(s: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in ``columns`` order) in one executemany, inside the session's transaction.

    On SQLite the values go through each column type's own bind processor (the same JSON text
    and timestamp format SQLAlchemy writes), straight to the driver's ``executemany``: Core's
    per-row parameter compilation cost more than SQLite's inserting, for the monitor's batches
    of thousands of instances, changes and journal rows. Other databases take Core's insert.
    """
    if not rows:
        return
    connection = s.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        s.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    convert = [(i, p) for i, p in enumerate(processors) if p is not None]
    # A batch's rows share one timestamp object: format it once, not once per row.
    last: dict[int, tuple[Any, Any]] = {}
    values: list[tuple[Any, ...]] = []
    for row in rows:
        out = list(row)
        for i, process in convert:
            value = out[i]
            seen = last.get(i)
            if seen is not None and seen[0] is value:
                out[i] = seen[1]
                continue
            out[i] = process(value)
            last[i] = (value, out[i])
        values.append(tuple(out))
    quote = dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    connection.exec_driver_sql(sql, values)


_IN_CHUNK = 500  # bound parameters per IN (...) query


def _rows_by_uid(s: Session, uids: set[str]) -> dict[str, Row[Any]]:
    """The stored instance rows of ``uids``, as Core rows: an ORM query per chunk cost a big
    batch's commit a seventh of its time in compiling and loading entities it only reads."""
    ordered = sorted(uids)
    table = _table(models.Instance)
    rows: dict[str, Row[Any]] = {}
    for i in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[i:i + _IN_CHUNK]
        rows.update((row.uid, row) for row in s.execute(select(table).where(table.c.uid.in_(chunk))))
    return rows


def _existing(s: Session, column: Any, names: set[str]) -> set[str]:
    return set(s.scalars(select(column).where(column.in_(sorted(names)))))


def _comparable(instance: Instance) -> Instance:
    """The instance as the catalog would store it (``terminating`` is not kept: DOWN covers it).

    Most instances already are (a serving pod, no gate, no SOA interfaces): those are returned
    as they are, instead of being built again field by field (a tenth of a big batch's commit)."""
    if type(instance.group) is Group and type(instance.ports) is dict and not instance.terminating \
            and not instance.stopped and instance.soa_interfaces is None and instance.authorized is None:
        return instance
    return Instance(service=instance.service, env=instance.env, group=Group(instance.group),
                    namespace=instance.namespace, pod=instance.pod, uid=instance.uid, ip=instance.ip,
                    ports=dict(instance.ports), ready=instance.ready, node=instance.node,
                    release=instance.release)


def _instance_of(row: models.Instance | Row[Any]) -> Instance:
    return Instance(service=row.service, env=row.env, group=Group(row.group), namespace=row.namespace,
                    pod=row.pod, uid=PodUid(row.uid), ip=row.ip,
                    ports={str(k): int(v) for k, v in row.ports.items()}, ready=row.ready, node=row.node,
                    release=row.release)


def _service_out(row: models.Service) -> ServiceOut:
    return ServiceOut(name=row.name, description=row.description, owner=row.owner,
                      created_at=row.created_at, updated_at=row.updated_at)


def _env_out(row: models.Environment) -> EnvironmentOut:
    return EnvironmentOut(name=row.name, namespace=row.namespace, created_at=row.created_at)


def _route_out(row: models.Route) -> RouteOut:
    return RouteOut(id=row.id, host=row.host, path_prefix=row.path_prefix, service=row.service,
                    env=row.env, created_at=row.created_at)


def _route_json(route: RouteOut) -> dict[str, Any]:
    return {"id": route.id, "host": route.host, "path_prefix": route.path_prefix, "service": route.service,
            "env": route.env}


def _gray_out(row: models.GrayPolicy) -> GrayPolicyOut:
    return GrayPolicyOut(service=row.service, ratio=row.ratio, whitelist=tuple(row.whitelist),
                         fallback=row.fallback, uid_source=UidSource(row.uid_source), uid_name=row.uid_name,
                         updated_at=row.updated_at)


def _change_out(row: models.Change) -> ChangeOut:
    return ChangeOut(revision=row.revision, type=change_type(row.type), uid=PodUid(row.uid),
                     service=row.service, env=row.env, group=Group(row.group) if row.group else None,
                     instance=row.instance, at=row.at)

