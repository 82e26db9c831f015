"""Grants are values: what one pod IP may reach, and why.

``Grant(kind, subject_ip, target, detail)`` is hashable and carries no secret, so sets of grants
are compared (desired vs actual), journaled and shown as they are. ``target`` names where the
executor acts: a MySQL server ``cluster/host:port``, a Dubbo interface, or a firewalled host of
the inventory. ``TargetPlan`` is what an executor is asked to make true on one target: exactly
``desired`` among the things in ``scope`` (the MySQL users, interfaces or ports BizCloud owns
there), leaving everything outside the scope alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    MYSQL = "mysql"   # an account user@ip on a MySQL/MariaDB server with privileges on one database
    SOA = "soa"       # the ip on a Dubbo interface's whitelist
    TCP = "tcp"       # an iptables ACCEPT from the ip to a port of a firewalled host


@dataclass(frozen=True, order=True)
class MysqlAccess:
    """The account's user and privileges; service and env say whose Secret holds its password."""

    user: str
    database: str
    privileges: tuple[str, ...]  # sorted, upper case
    service: str
    env: str

    def text(self) -> str:
        return f"{self.user} {','.join(self.privileges)} ON {self.database}.*"


@dataclass(frozen=True, order=True)
class TcpAccess:
    port: int

    def text(self) -> str:
        return f"tcp/{self.port}"


@dataclass(frozen=True, order=True)
class SoaAccess:
    def text(self) -> str:
        return "call"


Detail = MysqlAccess | TcpAccess | SoaAccess


def mysql_target(cluster: str, host: str, port: int) -> str:
    """The target name of one MySQL server of a cluster: ``cluster/host:port`` (IPv6 in brackets).

    The planner names targets with it and the MySQL executor resolves them back through the
    inventory by comparing with it, so the two never disagree on a format.
    """
    return f"{cluster}/[{host}]:{port}" if ":" in host else f"{cluster}/{host}:{port}"


def mysql_cluster(target: str) -> str:
    """The cluster of a MySQL server target (``mysql_target``'s first part)."""
    return target.split("/", 1)[0]


def detail_from_dict(kind: Kind, data: Mapping[str, Any]) -> Detail | None:
    """A detail back from its fields (``dataclasses.asdict``), or None when they do not fit ``kind``."""
    try:
        if kind is Kind.MYSQL:
            return MysqlAccess(user=data["user"], database=data["database"],
                               privileges=tuple(data["privileges"]), service=data["service"], env=data["env"])
        if kind is Kind.TCP:
            return TcpAccess(port=int(data["port"]))
        return SoaAccess()
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Grant:
    kind: Kind
    subject_ip: str
    target: str
    detail: Detail

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.kind.value, self.target, self.subject_ip, self.detail.text())

    def text(self) -> str:
        return f"{self.kind} {self.target} {self.subject_ip} {self.detail.text()}"


@dataclass(frozen=True)
class Reason:
    """Why a grant is desired: which instance of which service, under which config version."""

    service: str
    env: str
    namespace: str
    pod: str
    pod_uid: str
    config_version: int
    dependency: str  # e.g. "mysql[0]", "soa[1]", "tcp[0]", "redis[0]"


@dataclass(frozen=True)
class TargetPlan:
    """Make exactly ``desired`` true on ``target`` among what ``scope`` names; touch nothing else."""

    kind: Kind
    target: str
    desired: frozenset[Grant]
    scope: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Converged:
    """What a converge changed (empty when actual already matched desired)."""

    added: tuple[Grant, ...] = ()
    removed: tuple[Grant, ...] = ()
