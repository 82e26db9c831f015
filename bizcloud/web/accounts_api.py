"""Logins, users, tokens and the audit log under /api/v1: the console's and the CLI's side of accounts.

Log in with a name and password for a console session (an HttpOnly, SameSite=Strict cookie);
admins manage users and anyone makes API tokens for themselves (the CLI's ``Authorization:
Bearer``). The audit log and shell recordings are for logged-in users only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from bizcloud.accounts import credentials
from bizcloud.accounts.errors import BadCredentials, InvalidInput, LastAdmin, UserExists, UserNotFound
from bizcloud.accounts.roles import Action, Role
from bizcloud.accounts.store import SESSION_TTL, AuditOut, UserOut
from bizcloud.web.auth import SESSION_COOKIE, AccountsDep, UserDep, check, credential

router = APIRouter(prefix="/api/v1", tags=["accounts"])
UserName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    name: str
    role: Role
    disabled: bool
    created_at: datetime


class UserCreate(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="lowercase letters, digits, . _ -")
    role: Role = Role.VIEWER
    password: str | None = Field(default=None, min_length=8, max_length=1024,
                                 description="at least 8 characters; generated when left out")


class UserCreated(UserPublic):
    password: str | None = Field(default=None, description="the generated password, shown once")


class UserUpdate(BaseModel):
    role: Role | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    disabled: bool | None = None


class TokenCreate(BaseModel):
    name: str = Field(default="", max_length=128)


class TokenCreated(BaseModel):
    token: str = Field(description="the secret, shown once: send it as Authorization: Bearer <token>")


class AuditPublic(BaseModel):
    id: int
    user: str
    action: str
    target: str
    status: int | None
    detail: dict[str, Any]
    recording: bool
    client: str | None
    started_at: datetime
    ended_at: datetime | None


def _public(user: UserOut) -> UserPublic:
    return UserPublic(name=user.name, role=user.role, disabled=user.disabled, created_at=user.created_at)


def audit_public(record: AuditOut) -> AuditPublic:
    return AuditPublic(id=record.id, user=record.user, action=record.action, target=record.target,
                       status=record.status, detail=record.detail, recording=record.recording is not None,
                       client=record.client, started_at=record.started_at, ended_at=record.ended_at)


@router.post("/auth/login", response_model=UserPublic)
async def login(body: Login, request: Request, response: Response, accounts: AccountsDep) -> UserPublic:
    """A console session: sets the session cookie. Wrong name or password: 401 (and an audit row)."""
    request.state.login_name = body.name
    try:
        user, secret = await asyncio.to_thread(accounts.login, name=body.name, password=body.password)
    except BadCredentials as e:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, e.message) from e
    request.state.user = user
    response.set_cookie(SESSION_COOKIE, secret, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="strict", path="/")
    return _public(user)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, response: Response, accounts: AccountsDep) -> None:
    token = credential({"cookie": request.headers.get("cookie", "")})  # the session, never an API token
    if token:
        await asyncio.to_thread(accounts.revoke, token=token)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/auth/whoami", response_model=UserPublic)
def whoami(user: UserDep) -> UserPublic:
    return _public(user)


@router.get("/users", response_model=list[UserPublic])
def list_users(user: UserDep, accounts: AccountsDep) -> list[UserPublic]:
    return [_public(u) for u in accounts.list_users()]


@router.post("/users", response_model=UserCreated, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, request: Request, user: UserDep, accounts: AccountsDep) -> UserCreated:
    check(request, user, Action.MANAGE_USERS)
    password = body.password or credentials.new_password()
    try:
        created = accounts.create_user(name=body.name, password=password, role=body.role)
    except UserExists as e:
        raise HTTPException(status.HTTP_409_CONFLICT, e.one_line()) from e
    except InvalidInput as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, e.one_line()) from e
    return UserCreated(**_public(created).model_dump(), password=None if body.password else password)


@router.put("/users/{name}", response_model=UserPublic,
            responses={409: {"description": "the change would leave no enabled admin"}})
def update_user(name: UserName, body: UserUpdate, request: Request, user: UserDep,
                accounts: AccountsDep) -> UserPublic:
    check(request, user, Action.MANAGE_USERS)
    try:
        return _public(accounts.update_user(name=name, role=body.role, password=body.password,
                                            disabled=body.disabled))
    except UserNotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, e.one_line()) from e
    except LastAdmin as e:
        raise HTTPException(status.HTTP_409_CONFLICT, e.one_line()) from e
    except InvalidInput as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, e.one_line()) from e


@router.delete("/users/{name}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {}, 409: {"description": "the last enabled admin"}})
def delete_user(name: UserName, request: Request, user: UserDep, accounts: AccountsDep) -> None:
    """Remove a user, their sessions and tokens (the audit trail keeps their name). Admin only."""
    check(request, user, Action.MANAGE_USERS)
    try:
        accounts.delete_user(name=name)
    except UserNotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, e.one_line()) from e
    except LastAdmin as e:
        raise HTTPException(status.HTTP_409_CONFLICT, e.one_line()) from e


@router.post("/users/{name}/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(name: UserName, body: TokenCreate, request: Request, user: UserDep,
                 accounts: AccountsDep) -> TokenCreated:
    """An API token for yourself, or (admin) for anyone."""
    if name != user.name:
        check(request, user, Action.MANAGE_USERS)
    try:
        return TokenCreated(token=accounts.issue_token(user=name, name=body.name))
    except UserNotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, e.one_line()) from e


@router.get("/audit", response_model=list[AuditPublic])
def audit_log(user: UserDep, accounts: AccountsDep, *,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              before: Annotated[int | None, Query(ge=1, le=2**62, description="records older than this id")]
              = None,
              who: Annotated[str | None, Query(max_length=64, description="this user's records only")] = None,
              action: Annotated[str | None, Query(max_length=64)] = None) -> list[AuditPublic]:
    return [audit_public(a) for a in accounts.audit(limit=limit, before=before, user=who, action=action)]


@router.get("/audit/{record_id}/recording", response_class=FileResponse,
            responses={200: {"content": {"application/x-asciicast": {}}}, 404: {}})
def recording(record_id: Annotated[int, Path(ge=1, le=2**62)], request: Request, user: UserDep,
              accounts: AccountsDep) -> FileResponse:
    """The shell session's asciicast v2 recording."""
    record = accounts.audit_record(record_id=record_id)
    directory: FsPath = request.app.state.recordings_dir
    if record is None or record.recording is None or not (directory / record.recording).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"audit record {record_id} has no recording")
    return FileResponse(directory / record.recording, media_type="application/x-asciicast")
