"""The authorization store: grants in force with their reasons, and the journal of every change.

Written by the worker in the monitor process after each converge (one transaction per target),
read by the API (``bizcloud grants``, "why does this IP hold this grant"). Returns plain values.
Nothing here ever sees a password: grants carry users and privileges, errors come from executors
that keep secrets out of their messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from bizcloud.authz.grants import Converged, Grant, Kind, Reason, TargetPlan, detail_from_dict, mysql_cluster
from bizcloud.authz.models import GrantRow, JournalRow
from bizcloud.authz.planner import Refusal
from bizcloud.catalog.db import write_lock, writer
from bizcloud.catalog.models import utcnow


@dataclass(frozen=True)
class GrantOut:
    kind: str
    target: str
    subject_ip: str
    grant: str
    detail: dict[str, Any]
    services: list[str]
    reasons: list[dict[str, Any]]
    state: str
    attempts: int
    error: str | None
    since: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JournalOut:
    id: int
    at: datetime
    action: str
    outcome: str
    kind: str
    target: str
    subject_ip: str
    grant: str
    reasons: list[dict[str, Any]]
    trigger: str
    attempts: int
    error: str | None


def _detail(grant: Grant) -> dict[str, Any]:
    return dataclasses.asdict(grant.detail)


def _reasons(reasons: Iterable[Reason]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) for r in reasons]


def _services(reasons: Iterable[Reason]) -> str:
    return ",".join(sorted({r.service for r in reasons}))


def _row(grant: Grant, reasons: tuple[Reason, ...], *, state: str, attempts: int,
         error: str | None) -> GrantRow:
    now = utcnow()
    return GrantRow(kind=grant.kind.value, target=grant.target, subject_ip=grant.subject_ip,
                    grant=grant.detail.text(), detail=_detail(grant), services=_services(reasons),
                    reasons=_reasons(reasons), state=state, attempts=attempts, error=error, since=now,
                    updated_at=now)


def _grant_out(row: GrantRow) -> GrantOut:
    return GrantOut(kind=row.kind, target=row.target, subject_ip=row.subject_ip, grant=row.grant,
                    detail=row.detail, services=[x for x in row.services.split(",") if x],
                    reasons=row.reasons, state=row.state, attempts=row.attempts, error=row.error,
                    since=row.since, updated_at=row.updated_at)


def _journal_out(row: JournalRow) -> JournalOut:
    return JournalOut(id=row.id, at=row.at, action=row.action, outcome=row.outcome, kind=row.kind,
                      target=row.target, subject_ip=row.subject_ip, grant=row.grant, reasons=row.reasons,
                      trigger=row.trigger, attempts=row.attempts, error=row.error)


class AuthzStore:
    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self._lock = write_lock(engine)  # shared with the catalog's writers in this process

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with self._lock if write else nullcontext(), (self._write if write else self._read)() as s, s.begin():
            yield s

    # --- written by the worker -----------------------------------------------------------------

    def converged(self, plan: TargetPlan, result: Converged, reasons: Mapping[Grant, tuple[Reason, ...]], *,
                  trigger: str, attempts: int) -> None:
        """The target now holds exactly ``plan.desired``: journal what changed, make the rows say so."""
        with self._session(write=True) as s:
            rows = self._rows(s, plan)
            for grant in result.added:
                s.add(self._journal(grant, "grant", "ok", reasons.get(grant, ()), trigger=trigger,
                                    attempts=attempts))
            by_text = {(g.subject_ip, g.detail.text()): row for g, row in rows.items()}
            for grant in result.removed:  # read back from the target: match rows by what they grant
                previous = by_text.get((grant.subject_ip, grant.detail.text()))
                s.add(self._journal(grant, "revoke", "ok", (), trigger=trigger, attempts=attempts,
                                    old_reasons=previous.reasons if previous else []))
            now = utcnow()
            for grant, held in rows.items():
                if grant not in plan.desired:
                    s.delete(held)
            for grant in plan.desired:
                row = rows.get(grant)
                why = reasons.get(grant, ())
                if row is None:
                    s.add(_row(grant, why, state="applied", attempts=attempts, error=None))
                else:
                    row.reasons, row.services = _reasons(why), _services(why)
                    if row.state != "applied" or row.error is not None:
                        row.state, row.error, row.attempts, row.updated_at = "applied", None, attempts, now

    def failed(self, plan: TargetPlan, error: str, reasons: Mapping[Grant, tuple[Reason, ...]], *,
               trigger: str, attempts: int) -> None:
        """The target could not be converged: what it should hold is pending, journaled once."""
        with self._session(write=True) as s:
            rows = self._rows(s, plan)
            now = utcnow()
            for grant in plan.desired:
                row = rows.get(grant)
                why = reasons.get(grant, ())
                if row is None:
                    s.add(_row(grant, why, state="pending", attempts=attempts, error=error))
                    s.add(self._journal(grant, "grant", "pending", why, trigger=trigger, attempts=attempts,
                                        error=error))
                elif row.state != "applied":
                    row.attempts, row.error, row.updated_at = attempts, error, now
            for grant, row in rows.items():
                if grant not in plan.desired and row.state != "revoking":
                    row.state, row.attempts, row.error, row.updated_at = "revoking", attempts, error, now
                    s.add(self._journal(grant, "revoke", "pending", (), trigger=trigger, attempts=attempts,
                                        error=error, old_reasons=row.reasons))

    def refused(self, refusals: Iterable[Refusal], *, trigger: str) -> None:
        with self._session(write=True) as s:
            for r in refusals:
                s.add(JournalRow(action="refuse", outcome="refused", kind="-", target=r.dependency,
                                 subject_ip=r.ip, grant="", detail={}, trigger=trigger, attempts=0,
                                 error=r.message, reasons=[{"service": r.service, "env": r.env, "pod": r.pod,
                                                            "dependency": r.dependency}]))

    @staticmethod
    def _rows(s: Session, plan: TargetPlan) -> dict[Grant, GrantRow]:
        """The target's rows keyed by the grant they stand for (rows of unparseable grants are dropped)."""
        wanted = {(g.subject_ip, g.detail.text()): g for g in plan.desired}
        rows: dict[Grant, GrantRow] = {}
        for row in s.scalars(select(GrantRow).where(GrantRow.kind == plan.kind.value,
                                                    GrantRow.target == plan.target)):
            grant = wanted.get((row.subject_ip, row.grant)) or _grant_from_row(row)
            if grant is None:
                s.delete(row)
            else:
                rows[grant] = row
        return rows

    @staticmethod
    def _journal(grant: Grant, action: str, outcome: str, reasons: Iterable[Reason], *, trigger: str,
                 attempts: int, error: str | None = None,
                 old_reasons: list[Any] | None = None) -> JournalRow:
        return JournalRow(action=action, outcome=outcome, kind=grant.kind.value, target=grant.target,
                          subject_ip=grant.subject_ip, grant=grant.detail.text(), detail=_detail(grant),
                          reasons=old_reasons if old_reasons is not None else _reasons(reasons),
                          trigger=trigger[:255], attempts=attempts, error=error)

    def owned(self) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        """(MySQL users per cluster, interfaces) BizCloud ever granted: what it may revoke."""
        users: dict[str, set[str]] = {}
        interfaces: set[str] = set()
        with self._session() as s:
            query = select(JournalRow.kind, JournalRow.target, JournalRow.detail).where(
                JournalRow.action == "grant", JournalRow.kind.in_((Kind.MYSQL.value, Kind.SOA.value))
            ).distinct()
            for kind, target, detail in s.execute(query):
                if kind == Kind.SOA.value:
                    interfaces.add(target)
                elif isinstance(detail, dict) and "user" in detail:
                    users.setdefault(mysql_cluster(target), set()).add(detail["user"])
        return {c: frozenset(u) for c, u in users.items()}, frozenset(interfaces)

    # --- read by the API -----------------------------------------------------------------------

    def grants(self, *, ip: str | None = None, service: str | None = None, target: str | None = None,
               kind: str | None = None) -> list[GrantOut]:
        with self._session() as s:
            query = select(GrantRow).order_by(GrantRow.kind, GrantRow.target, GrantRow.subject_ip)
            if ip is not None:
                query = query.where(GrantRow.subject_ip == ip)
            if target is not None:
                query = query.where(GrantRow.target == target)
            if kind is not None:
                query = query.where(GrantRow.kind == kind)
            rows = [_grant_out(r) for r in s.scalars(query)]
        return [r for r in rows if service is None or service in r.services]

    def journal(self, *, ip: str | None = None, service: str | None = None, target: str | None = None,
                limit: int = 200) -> list[JournalOut]:
        with self._session() as s:
            query = select(JournalRow).order_by(JournalRow.id.desc()).limit(limit)
            if ip is not None:
                query = query.where(JournalRow.subject_ip == ip)
            if target is not None:
                query = query.where(JournalRow.target == target)
            rows = [_journal_out(r) for r in s.scalars(query)]
        return [r for r in rows if service is None or any(x.get("service") == service for x in r.reasons)]

    def clear(self) -> None:
        """Forget the grants in force (tests and ``bizcloud authz reset``); the journal stays."""
        with self._session(write=True) as s:
            s.execute(delete(GrantRow))


def _grant_from_row(row: GrantRow) -> Grant | None:
    """Rebuild the grant a row stands for (to revoke grants no longer desired)."""
    detail = detail_from_dict(Kind(row.kind), row.detail)
    return None if detail is None else Grant(Kind(row.kind), row.subject_ip, row.target, detail)
