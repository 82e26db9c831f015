"""Writing and reading whitelists in ZooKeeper, where Dubbo reads its condition routers.

Standard library and kazoo only. ``set_whitelist`` converges both places of ``rules`` (the config
center node and the legacy ``routers`` node) to one list; ``clear_whitelist`` removes both,
which opens the interface again. Writes are idempotent: the authorization executor may replay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from bizcloud.soa.rules import (
    allowed_ips,
    condition_router_path,
    is_bizcloud_router,
    legacy_router_node,
    normalize_ips,
    routers_path,
    whitelist_rule,
)


def _put(client: KazooClient, path: str, data: bytes) -> None:
    try:
        client.create(path, data, makepath=True)
    except NodeExistsError:
        current, _ = client.get(path)
        if current != data:
            client.set(path, data)


def set_whitelist(client: KazooClient, interface: str, ips: Iterable[str]) -> tuple[str, ...]:
    """Only ``ips`` may call ``interface`` from now on; returns the normalized list."""
    allowed = normalize_ips(ips)
    _put(client, condition_router_path(interface), whitelist_rule(interface, allowed))
    legacy = legacy_router_node(interface, allowed)
    client.ensure_path(routers_path(interface))
    for node in client.get_children(routers_path(interface)):
        if is_bizcloud_router(node) and node != legacy:
            _delete(client, f"{routers_path(interface)}/{node}")
    _put(client, f"{routers_path(interface)}/{legacy}", b"")
    return allowed


def clear_whitelist(client: KazooClient, interface: str) -> None:
    """No rule: every consumer may call ``interface``."""
    _delete(client, condition_router_path(interface))
    try:
        nodes = client.get_children(routers_path(interface))
    except NoNodeError:
        return
    for node in nodes:
        if is_bizcloud_router(node):
            _delete(client, f"{routers_path(interface)}/{node}")


def get_whitelist(client: KazooClient, interface: str) -> frozenset[str] | None:
    """The IPs allowed to call ``interface``, or None when it is open."""
    try:
        data, _ = client.get(condition_router_path(interface))
    except NoNodeError:
        return None
    return allowed_ips(data)


def _delete(client: KazooClient, path: str) -> None:
    with contextlib.suppress(NoNodeError):
        client.delete(path)
