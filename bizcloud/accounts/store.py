"""Users, tokens and audit records on the catalog's database: the only code that queries them.

Sits under the web layer (login, token checks on every mutating request, audit rows) and the
CLI's ``bizcloud users`` commands, which write to the same database directly, as an operator on
the server's machine would. Returns plain values, never rows, like the catalog's store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bizcloud.accounts import credentials
from bizcloud.accounts.errors import BadCredentials, InvalidInput, LastAdmin, UserExists, UserNotFound
from bizcloud.accounts.models import USER_NAME_LENGTH, AuditRecord, Token, User
from bizcloud.accounts.roles import Role
from bizcloud.catalog.db import writer
from bizcloud.catalog.models import utcnow

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 8
SESSION_TTL = timedelta(hours=12)


@dataclass(frozen=True)
class UserOut:
    name: str
    role: Role
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenOut:
    id: int
    user: str
    kind: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class AuditOut:
    id: int
    user: str
    action: str
    target: str
    status: int | None
    detail: dict[str, Any]
    recording: str | None
    client: str | None
    started_at: datetime
    ended_at: datetime | None


def _user(u: User) -> UserOut:
    return UserOut(name=u.name, role=Role(u.role), disabled=u.disabled, created_at=u.created_at)


def _audit(a: AuditRecord) -> AuditOut:
    return AuditOut(id=a.id, user=a.user, action=a.action, target=a.target, status=a.status,
                    detail=dict(a.detail or {}), recording=a.recording, client=a.client,
                    started_at=a.started_at, ended_at=a.ended_at)


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name) or len(name) > USER_NAME_LENGTH:
        raise InvalidInput(f"user name {name!r} is not valid",
                           hint="use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter "
                                "or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters are needed",
                           hint="choose a longer password, or leave it out to have one generated")
    return password


class AccountStore:
    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        with (self._write if write else self._read)() as s, s.begin():
            yield s

    # --- users ---------------------------------------------------------------------------------

    def create_user(self, *, name: str, password: str, role: Role) -> UserOut:
        check_user_name(name)
        check_password(password)
        try:
            with self._session(write=True) as s:
                user = User(name=name, password_hash=credentials.hash_password(password), role=role.value)
                s.add(user)
                s.flush()
                return _user(user)
        except IntegrityError as e:
            raise UserExists(f"user {name!r} exists already",
                             hint="pick another name, or change this user's role or password") from e

    def list_users(self) -> list[UserOut]:
        with self._session() as s:
            return [_user(u) for u in s.scalars(select(User).order_by(User.name))]

    def get_user(self, *, name: str) -> UserOut:
        with self._session() as s:
            return _user(self._require(s, name))

    def update_user(self, *, name: str, role: Role | None = None, password: str | None = None,
                    disabled: bool | None = None) -> UserOut:
        with self._session(write=True) as s:
            user = self._require(s, name)
            if (role not in (None, Role.ADMIN) or disabled) and self._last_admin(s, user):
                change = "disable" if disabled else f"make them {role}"
                raise LastAdmin(f"{name!r} is the last enabled admin: cannot {change}",
                                hint="make another user admin first, then change this one")
            if role is not None:
                user.role = role.value
            if password is not None:
                user.password_hash = credentials.hash_password(check_password(password))
            if disabled is not None:
                user.disabled = disabled
                if disabled:  # a disabled user's sessions and tokens stop working at once
                    for token in s.scalars(select(Token).where(Token.user_id == user.id)):
                        s.delete(token)
            return _user(user)

    def delete_user(self, *, name: str) -> None:
        """Remove a user and their sessions and tokens; their audit records keep their name."""
        with self._session(write=True) as s:
            user = self._require(s, name)
            if self._last_admin(s, user):
                raise LastAdmin(f"{name!r} is the last enabled admin: cannot delete them",
                                hint="make another user admin first, then delete this one")
            for token in s.scalars(select(Token).where(Token.user_id == user.id)):
                s.delete(token)
            s.delete(user)

    @staticmethod
    def _last_admin(s: Session, user: User) -> bool:
        """Whether ``user`` is the only enabled admin (the one who could undo a mistake)."""
        if user.role != Role.ADMIN.value or user.disabled:
            return False
        others = s.scalars(select(User.id).where(User.role == Role.ADMIN.value, User.disabled.is_(False),
                                                 User.id != user.id)).first()
        return others is None

    def count_users(self) -> int:
        with self._session() as s:
            return len(s.scalars(select(User.id)).all())

    @staticmethod
    def _require(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserNotFound(f"no user named {name!r}", hint="`bizcloud users ls` lists the users")
        return user

    # --- logins and tokens -----------------------------------------------------------------------

    def login(self, *, name: str, password: str, ttl: timedelta = SESSION_TTL) -> tuple[UserOut, str]:
        """Check a password and open a console session; returns the user and the session's secret."""
        with self._session(write=True) as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None or user.disabled or not credentials.verify_password(user.password_hash, password):
                raise BadCredentials("wrong user name or password")
            if credentials.needs_rehash(user.password_hash):
                user.password_hash = credentials.hash_password(password)
            secret = credentials.new_token()
            s.add(Token(user_id=user.id, kind="session", name="console",
                        token_hash=credentials.token_hash(secret), expires_at=utcnow() + ttl))
            return _user(user), secret

    def issue_token(self, *, user: str, name: str = "", ttl: timedelta | None = None) -> str:
        """A new API token for ``user``; the secret is returned once and only its hash is kept."""
        with self._session(write=True) as s:
            owner = self._require(s, user)
            secret = credentials.new_token()
            s.add(Token(user_id=owner.id, kind="api", name=name, token_hash=credentials.token_hash(secret),
                        expires_at=utcnow() + ttl if ttl else None))
            return secret

    def authenticate(self, *, token: str) -> UserOut:
        """The user a session or API token belongs to; BadCredentials if it is unknown or expired."""
        with self._session() as s:
            row = s.execute(select(Token, User).join(User, Token.user_id == User.id)
                            .where(Token.token_hash == credentials.token_hash(token))).first()
            if row is None:
                raise BadCredentials("unknown or revoked token", hint="log in again or create a new token")
            found, user = row
            if found.expires_at is not None and found.expires_at < utcnow():
                raise BadCredentials("the session has expired", hint="log in again")
            if user.disabled:
                raise BadCredentials(f"user {user.name!r} is disabled")
            return _user(user)

    def revoke(self, *, token: str) -> None:
        with self._session(write=True) as s:
            found = s.scalar(select(Token).where(Token.token_hash == credentials.token_hash(token)))
            if found is not None:
                s.delete(found)

    def list_tokens(self, *, user: str) -> list[TokenOut]:
        with self._session() as s:
            owner = self._require(s, user)
            rows = s.scalars(select(Token).where(Token.user_id == owner.id, Token.kind == "api")
                             .order_by(Token.id))
            return [TokenOut(id=t.id, user=user, kind=t.kind, name=t.name, created_at=t.created_at,
                             expires_at=t.expires_at, last_used_at=t.last_used_at) for t in rows]

    # --- audit ---------------------------------------------------------------------------------

    def audit_start(self, *, user: str, action: str, target: str, client: str | None = None,
                    detail: dict[str, Any] | None = None, recording: str | None = None) -> int:
        with self._session(write=True) as s:
            record = AuditRecord(user=user, action=action[:64], target=target[:512], client=client,
                                 detail=detail or {}, recording=recording)
            s.add(record)
            s.flush()
            return record.id

    def audit_finish(self, *, record_id: int, status: int, detail: dict[str, Any] | None = None) -> None:
        with self._session(write=True) as s:
            record = s.get(AuditRecord, record_id)
            if record is None:
                return
            record.status = status
            record.ended_at = utcnow()
            if detail:
                record.detail = {**(record.detail or {}), **detail}

    def audit(self, *, limit: int = 100, before: int | None = None, user: str | None = None,
              action: str | None = None) -> list[AuditOut]:
        query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditRecord.id < before)
        if user is not None:
            query = query.where(AuditRecord.user == user)
        if action is not None:
            query = query.where(AuditRecord.action == action)
        with self._session() as s:
            return [_audit(a) for a in s.scalars(query)]

    def audit_record(self, *, record_id: int) -> AuditOut | None:
        with self._session() as s:
            found = s.get(AuditRecord, record_id)
            return _audit(found) if found else None
