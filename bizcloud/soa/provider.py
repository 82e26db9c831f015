"""The provider helper: who may call this interface, following ZooKeeper, checked on every call.

Runs inside application images: standard library and kazoo only. ``Whitelist`` watches the
interface's condition router (``rules.condition_router_path``) and answers ``allows(ip)`` from
memory. The rule (documented in ``rules``): **no rule = open** (every consumer may call), a
rule = only the listed IPs (an empty list = nobody). The authorization issue will write these
rules from the dependency graph; until then ``bizcloud soa whitelist set`` does.

A provider checks the peer address of each incoming connection (pods are not masqueraded, so
the peer address is the consumer pod's IP) and refuses the others, e.g. with HTTP 403::

    with Whitelist(hosts, "com.example.DemoApi") as whitelist:
        ...
        if not whitelist.allows(self.client_address[0]):
            self.send_error(403, "not on the whitelist of com.example.DemoApi")
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import Any, Self

from kazoo.client import KazooClient
from kazoo.recipe.watchers import DataWatch

from bizcloud.soa.rules import allowed_ips, condition_router_path
from bizcloud.soa.urls import validate_interface
from bizcloud.soa.watching import Watching

log = logging.getLogger("bizcloud.soa.provider")

__all__ = ["NotWhitelistedError", "Whitelist"]


class NotWhitelistedError(PermissionError):
    """A consumer IP the interface's whitelist does not list."""


class Whitelist(Watching):
    """The consumers allowed to call ``interface``, kept current by a ZooKeeper watch."""

    def __init__(self, hosts: str, interface: str, *, client: KazooClient | None = None) -> None:
        self.interface = validate_interface(interface)
        super().__init__(hosts, client)
        self._allowed: frozenset[str] | None = None
        self._loaded = threading.Event()
        self.refused = 0

    def start(self, timeout: float = 15.0) -> Self:
        self._connect(timeout)
        DataWatch(self._client, condition_router_path(self.interface), self._on_rule)
        self._loaded.wait(timeout)
        return self

    def _on_rule(self, data: bytes | None, _stat: Any) -> bool:
        if self._stopped:
            return False
        self._allowed = allowed_ips(data)
        self._loaded.set()
        log.info("whitelist interface=%s allowed=%s", self.interface,
                 "everyone" if self._allowed is None else sorted(self._allowed))
        return True

    @property
    def allowed(self) -> frozenset[str] | None:
        """The listed IPs, or None when there is no rule (open)."""
        return self._allowed

    def allows(self, consumer_ip: str) -> bool:
        allowed = self._allowed
        if allowed is None:
            return True
        try:
            ip = ipaddress.ip_address(consumer_ip)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:10.88.0.5 from a dual-stack socket
            ip = ip.ipv4_mapped
        ok = str(ip) in allowed
        if not ok:
            self.refused += 1
        return ok

    def check(self, consumer_ip: str) -> None:
        """Raise ``NotWhitelistedError`` unless ``consumer_ip`` may call."""
        if not self.allows(consumer_ip):
            raise NotWhitelistedError(f"{consumer_ip} is not on the whitelist of {self.interface}")
