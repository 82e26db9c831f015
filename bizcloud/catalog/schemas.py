"""The catalog's REST shapes: what clients send (Create/Update) and get back (Public), per entity.

``api.py`` validates requests against these before the store sees them, so a bad name answers 422
naming the field and never reaches SQL; responses are built from the store's values
(``from_attributes``), so the store's dataclasses and these stay the only two shapes of an entity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bizcloud.catalog.policies import DEFAULT_UID_NAME, ConfigChange, UidSource
from bizcloud.monitor.model import EventType, Group

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Service and environment names become Kubernetes names and label values: DNS-1123 labels.
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL, min_length=1, max_length=63)]
# A route's host: a DNS name, or "*" for any host (the gateway tries exact hosts first).
ANY_HOST = "*"
Host = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN[:-1] + r"$|^\*$", min_length=1, max_length=253)]
# An HTTP token (RFC 9110): a header, cookie or query argument name nginx can read the user ID from.
UidName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", min_length=1,
                                           max_length=128)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
PathPrefix = Annotated[str, StringConstraints(pattern=r"^/[^\s?#]*$", max_length=255)]


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- services -------------------------------------------------------------------------------------

class ServiceBase(BaseModel):
    description: str = Field(default="", max_length=4000)
    owner: str = Field(default="", max_length=128)


class ServiceCreate(ServiceBase):
    name: Name


class ServiceUpdate(BaseModel):
    """Fields left out are kept."""

    description: str | None = Field(default=None, max_length=4000)
    owner: str | None = Field(default=None, max_length=128)


class ServicePublic(ServiceBase, Public):
    name: str
    created_at: datetime
    updated_at: datetime


# --- environments ---------------------------------------------------------------------------------

class EnvironmentCreate(BaseModel):
    name: Name
    namespace: Name | None = Field(default=None, description="defaults to bc-<name>")


class EnvironmentPublic(Public):
    name: str
    namespace: str
    created_at: datetime


# --- routes ---------------------------------------------------------------------------------------

class RouteBase(BaseModel):
    host: Host
    path_prefix: PathPrefix = "/"
    service: Name
    env: Name


class RouteCreate(RouteBase):
    pass


class RoutePublic(Public):
    id: int
    host: str
    path_prefix: str
    service: str
    env: str
    created_at: datetime


# --- gray policies --------------------------------------------------------------------------------

class GrayPolicyIn(BaseModel):
    """A service's gray split. ``ratio`` is a percentage of users (by ``bucket(uid)``); whitelisted
    user IDs always go gray; the gateway reads the user ID from ``uid_source`` named ``uid_name``."""

    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(default=0.0, ge=0, le=100, description="percent of users sent to the gray group")
    whitelist: list[UserId] = Field(default_factory=list, max_length=10_000)
    fallback: bool = Field(default=True, description="when the chosen group has no instance, use the other")
    uid_source: UidSource = UidSource.HEADER
    uid_name: UidName = DEFAULT_UID_NAME


class GrayPolicyPublic(GrayPolicyIn, Public):
    service: str
    updated_at: datetime | None


# --- instances and the change stream --------------------------------------------------------------

class InstancePublic(Public):
    uid: str
    service: str
    env: str
    group: Group
    namespace: str
    pod: str
    ip: str | None
    ports: dict[str, int]
    ready: bool
    node: str | None
    release: str | None


class InstanceList(BaseModel):
    """Instances current at ``revision``: follow ``/changes?since=<revision>`` to keep them current."""

    revision: int
    instances: list[InstancePublic]


class ChangePublic(Public):
    revision: int
    type: EventType | ConfigChange
    uid: str
    service: str
    env: str
    group: Group | None = Field(description="the instance's group; null for ROUTE and GRAY changes")
    instance: dict[str, Any]
    at: datetime


class ChangePage(BaseModel):
    """One answer of the change stream. Resume with ``since=next``."""

    revision: int = Field(description="the newest revision in the catalog when this page was read")
    next: int = Field(description="pass as `since` for the following page: the last change's revision")
    more: bool = Field(description="true when `limit` cut the page short: ask again at once")
    changes: list[ChangePublic]
