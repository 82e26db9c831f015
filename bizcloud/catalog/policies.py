"""What the catalog tells the access layer besides instances: gray policies, config changes, valid addresses.

The gateway's syncer follows the change stream; instance changes are the monitor's (UP, DOWN,
CHANGED), and these are the catalog's own: a ROUTE change when a route is added or removed, a GRAY
change when a service's gray policy is set. Addresses are checked here, at the catalog's door, so
an instance nginx could not connect to (or a Lua table could not hold) never reaches a gateway.
Purely computational; ``store.py`` applies it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bizcloud.monitor.model import EventType, Instance
from bizcloud.usersplit import GrayPolicy

__all__ = ["DEFAULT_UID_NAME", "ConfigChange", "GrayPolicyOut", "UidSource", "change_type", "invalid_address"]

DEFAULT_UID_NAME = "X-User-Id"


class ConfigChange(StrEnum):
    ROUTE = "ROUTE"  # a route was added or removed: ``instance`` holds it (``deleted`` when removed)
    GRAY = "GRAY"    # a service's gray policy was set: ``instance`` holds the policy


class UidSource(StrEnum):
    HEADER = "header"
    COOKIE = "cookie"
    QUERY = "query"


@dataclass(frozen=True)
class GrayPolicyOut:
    """A service's gray policy as stored, plus where the gateway reads the user ID from."""

    service: str
    ratio: float = 0.0
    whitelist: tuple[str, ...] = ()
    fallback: bool = True
    uid_source: UidSource = UidSource.HEADER
    uid_name: str = DEFAULT_UID_NAME
    updated_at: datetime | None = field(default=None, compare=False)

    def split(self) -> GrayPolicy:
        """The shared user-split value (``bizcloud.usersplit``) for this policy."""
        return GrayPolicy(ratio=self.ratio, whitelist=frozenset(self.whitelist), fallback=self.fallback)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, **self.split().to_json(), "uid_source": self.uid_source.value,
                "uid_name": self.uid_name}


def change_type(value: str) -> EventType | ConfigChange:
    """The type of a stored Change row: an instance event or a config change."""
    return ConfigChange(value) if value in ConfigChange.__members__ else EventType(value)


def _is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address as a gateway's upstream may name it (no zone index), read by the C
    library's ``inet_pton``: a tenth of ``ipaddress.ip_address``'s cost, on every UP the catalog takes."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            continue
        return True
    return False


def invalid_address(instance: Instance) -> str | None:
    """Why an instance that claims to serve has an address no gateway may use; None when it is fine."""
    if not _is_ip(instance.ip or ""):
        return f"ip {instance.ip!r} is not an IP address"
    bad = {name: port for name, port in instance.ports.items()
           if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535}
    if bad:
        return f"ports {bad} are not TCP ports (1-65535)"
    return None
