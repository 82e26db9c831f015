"""The release store: history, gray release state and per-service operation locks, in the catalog's database.

Written by the CLI/API's release operations and the gray controller's runner; read by ``bizcloud
gray status`` and the console. Returns plain values (``HistoryEntry``, ``GrayState``). The lock is
taken in the database itself (an insert, or an update of an expired row, each one statement), so
it holds between processes — the API server, the CLI and the controller — on SQLite and on a server
database alike.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from bizcloud.catalog.db import Sessions
from bizcloud.catalog.models import utcnow
from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import Thresholds
from bizcloud.release.gray_plan import GrayState, Phase
from bizcloud.release.models import GrayRow, HistoryRow, LockRow

ACTIONS = frozenset({"deploy", "scale", "env-create", "env-delete", "gray-start", "gray-step", "gray-set",
                     "gray-pause", "gray-resume", "gray-promote", "gray-rollback", "gray-auto-rollback"})
OUTCOMES = frozenset({"ok", "failed", "refused", "running"})
DEFAULT_LOCK_TTL_S = 900


class OperationConflict(BizCloudError):  # noqa: N818  (the name the CLI, API and docs use)
    """Another release operation holds the service+env; nothing was done."""


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    service: str
    env: str
    action: str
    detail: dict[str, Any]
    user: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    message: str


@dataclass
class OperationLock:
    """A held lock; ``renew`` pushes its expiry for long operations (a gray step's analysis)."""

    store: ReleaseStore
    service: str
    env: str
    operation: str
    holder: str
    token: str
    expires_at: datetime

    def renew(self, ttl_s: float = DEFAULT_LOCK_TTL_S) -> None:
        self.expires_at = self.store._renew(self, ttl_s)


def _entry(row: HistoryRow) -> HistoryEntry:
    return HistoryEntry(id=row.id, service=row.service, env=row.env, action=row.action, detail=row.detail,
                        user=row.user, started_at=row.started_at, finished_at=row.finished_at,
                        outcome=row.outcome, message=row.message)


def _state(row: GrayRow) -> GrayState:
    return GrayState(service=row.service, env=row.env, image=row.image, release=row.release,
                     base_image=row.base_image, base_release=row.base_release, replicas=row.replicas,
                     ratio=row.ratio, steps=tuple(float(s) for s in row.steps), step_index=row.step_index,
                     interval_s=row.interval_s, whitelist=frozenset(map(str, row.whitelist)),
                     thresholds=Thresholds.from_json(row.thresholds), phase=Phase(row.state),
                     message=row.message, started_by=row.started_by, started_at=row.started_at,
                     updated_at=row.updated_at, next_step_at=row.next_step_at)


def _columns(state: GrayState) -> dict[str, Any]:
    return {"image": state.image, "release": state.release, "base_image": state.base_image,
            "base_release": state.base_release, "replicas": state.replicas, "ratio": state.ratio,
            "steps": list(state.steps), "step_index": state.step_index, "interval_s": state.interval_s,
            "whitelist": sorted(state.whitelist), "thresholds": state.thresholds.to_json(),
            "state": state.phase.value, "message": state.message, "started_by": state.started_by,
            "started_at": state.started_at, "updated_at": state.updated_at,
            "next_step_at": state.next_step_at}


class ReleaseStore:
    def __init__(self, engine: Engine) -> None:
        self._session = Sessions(engine)

    # --- history -------------------------------------------------------------------------------

    def record(self, *, service: str, env: str, action: str, user: str, detail: dict[str, Any] | None = None,
               outcome: str = "running", message: str = "") -> int:
        """Append a history row; an operation still under way is ``running`` until ``finish``."""
        if action not in ACTIONS:
            raise BizCloudError(f"action: {action!r} is not a release action",
                                hint=f"use one of {', '.join(sorted(ACTIONS))}")
        _check_outcome(outcome)
        now = utcnow()
        with self._session(write=True) as s:
            row = HistoryRow(service=service, env=env, action=action, detail=detail or {}, user=user,
                             started_at=now, finished_at=None if outcome == "running" else now,
                             outcome=outcome, message=message)
            s.add(row)
            s.flush()
            return row.id

    def finish(self, entry_id: int, *, outcome: str, message: str = "") -> None:
        _check_outcome(outcome, finished=True)
        with self._session(write=True) as s:
            row = s.get(HistoryRow, entry_id)
            if row is None:
                raise BizCloudError(f"history entry {entry_id} does not exist",
                                    hint="finish the id that record() returned")
            row.outcome, row.message, row.finished_at = outcome, message or row.message, utcnow()

    def history(self, *, service: str | None = None, env: str | None = None,
                limit: int = 50) -> list[HistoryEntry]:
        """The newest entries first."""
        query = select(HistoryRow).order_by(HistoryRow.id.desc()).limit(max(1, limit))
        if service is not None:
            query = query.where(HistoryRow.service == service)
        if env is not None:
            query = query.where(HistoryRow.env == env)
        with self._session() as s:
            return [_entry(row) for row in s.scalars(query)]

    # --- gray release --------------------------------------------------------------------------

    def gray(self, service: str, env: str) -> GrayState | None:
        with self._session() as s:
            row = s.get(GrayRow, (service, env))
            return None if row is None else _state(row)

    def grays(self) -> list[GrayState]:
        with self._session() as s:
            return [_state(r) for r in s.scalars(select(GrayRow).order_by(GrayRow.service, GrayRow.env))]

    def put_gray(self, state: GrayState) -> None:
        """Store ``state`` as the service+env's gray release (replacing the previous one)."""
        with self._session(write=True) as s:
            row = s.get(GrayRow, (state.service, state.env))
            if row is None:
                s.add(GrayRow(service=state.service, env=state.env, **_columns(state)))
            else:
                for key, value in _columns(state).items():
                    setattr(row, key, value)

    # --- operation locks -----------------------------------------------------------------------

    @contextmanager
    def operation(self, service: str, env: str, name: str, holder: str, *,
                  ttl_s: float = DEFAULT_LOCK_TTL_S) -> Iterator[OperationLock]:
        """Hold the service+env for operation ``name`` until the block ends (on error too).

        Raises ``OperationConflict`` naming the running operation, its holder and since when, if
        another operation holds it and has not expired. An expired lock (its holder died) is taken over.
        """
        lock = self._acquire(service, env, name, holder, ttl_s)
        try:
            yield lock
        finally:
            with self._session(write=True) as s:
                s.execute(delete(LockRow).where(LockRow.service == service, LockRow.env == env,
                                                LockRow.token == lock.token))

    def _acquire(self, service: str, env: str, name: str, holder: str, ttl_s: float) -> OperationLock:
        now = utcnow()
        token = secrets.token_hex(16)
        expires = now + timedelta(seconds=ttl_s)
        values = {"operation": name, "holder": holder, "token": token, "acquired_at": now,
                  "expires_at": expires}
        lock = OperationLock(store=self, service=service, env=env, operation=name, holder=holder, token=token,
                             expires_at=expires)
        try:
            with self._session(write=True) as s:
                s.add(LockRow(service=service, env=env, **values))
            return lock
        except IntegrityError:
            pass   # held, or left behind: take it over only if it expired
        with self._session(write=True) as s:
            taken = s.execute(update(LockRow).where(LockRow.service == service, LockRow.env == env,
                                                    LockRow.expires_at < now).values(**values))
            if taken.rowcount == 1:   # type: ignore[attr-defined]
                return lock
            held = s.get(LockRow, (service, env))
        if held is None:     # released between our two statements: try once more
            return self._acquire(service, env, name, holder, ttl_s)
        raise OperationConflict(
            f"{held.operation} is already running on {service} in {env}: held by {held.holder} since "
            f"{held.acquired_at:%Y-%m-%d %H:%M:%S} UTC; {name} was not started",
            hint=f"wait for it to finish (`bizcloud gray status {service} --env {env}` shows the history), "
                 f"then run it again; the lock expires at {held.expires_at:%H:%M:%S} UTC if its holder died")

    def _renew(self, lock: OperationLock, ttl_s: float) -> datetime:
        expires = utcnow() + timedelta(seconds=ttl_s)
        with self._session(write=True) as s:
            done = s.execute(update(LockRow).where(LockRow.service == lock.service, LockRow.env == lock.env,
                                                   LockRow.token == lock.token).values(expires_at=expires))
            if done.rowcount != 1:   # type: ignore[attr-defined]
                raise OperationConflict(f"{lock.operation} on {lock.service} in {lock.env} lost its lock "
                                        "(it expired and another operation took it)",
                                        hint="renew the lock more often than its time to live")
        return expires


def _check_outcome(outcome: str, *, finished: bool = False) -> None:
    allowed = OUTCOMES - {"running"} if finished else OUTCOMES
    if outcome not in allowed:
        raise BizCloudError(f"outcome: {outcome!r} is not a release outcome",
                            hint=f"use one of {', '.join(sorted(allowed))}")
