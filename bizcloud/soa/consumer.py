"""The consumer SDK: providers of one interface from ZooKeeper, a group per user, a balancer per group.

Runs inside application images: standard library, kazoo and ``bizcloud.usersplit`` only.

- **Providers** come from a kazoo ``ChildrenWatch`` on ``/dubbo/<interface>/providers`` (Dubbo's
  layout, see ``urls``): when the registry deletes a node, ZooKeeper notifies the watch and the
  provider leaves the pick set in that callback, before any later ``pick``.
- **Groups**: a provider tagged ``dubbo.tag=gray`` is gray, any other normal. ``pick(uid)`` puts
  the user in a group with the service's ``GrayPolicy`` (node ``/bizcloud/gray/<service>``,
  watched; no node means ratio 0), i.e. with the same ``bucket(uid)`` as the gateway, so a user
  stays in one group along the call chain.
- **Fallback** (documented contract): when the user's group has no provider and the policy's
  ``fallback`` is true (the default), the other group serves (counted in ``fallbacks``); with
  ``fallback`` false, ``NoProvider`` is raised. Dubbo's tag router behaves the same for a gray
  request (no gray provider: untagged ones serve unless ``dubbo.force.tag``).
- ``env`` (optional): only providers registered from that BizCloud environment (their
  ``bizcloud.env`` parameter), so a dev consumer never calls a test pod of the same interface;
  providers registered by something else than BizCloud carry no environment and are kept.
- ``mark_failed(provider)`` keeps a provider out of picks for ``quarantine_s`` seconds (a
  connection failure seen before the registry's DOWN).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from bizcloud.soa.balancers import Balancer, make_balancer
from bizcloud.soa.rules import gray_policy_path
from bizcloud.soa.urls import GroupName, Provider, parse_provider, providers_path, validate_interface
from bizcloud.soa.watching import Watching
from bizcloud.usersplit import GrayPolicy

log = logging.getLogger("bizcloud.soa.consumer")

__all__ = ["Consumer", "NoProvider", "Provider", "read_gray_policy", "write_gray_policy"]


class NoProvider(LookupError):  # noqa: N818 - the SDK contract names it
    """No provider of the interface can serve this call."""


def write_gray_policy(client: KazooClient, service: str, policy: GrayPolicy) -> None:
    """Publish ``service``'s gray split for every consumer (the gray controller's write)."""
    path = gray_policy_path(service)
    data = json.dumps(policy.to_json(), sort_keys=True).encode()
    try:
        client.create(path, data, makepath=True)
    except NodeExistsError:
        client.set(path, data)


def read_gray_policy(data: bytes | None) -> GrayPolicy:
    """A policy from a node's data; missing or unreadable data means everyone normal."""
    if not data:
        return GrayPolicy()
    try:
        return GrayPolicy.from_json(json.loads(data))
    except (ValueError, TypeError, AttributeError) as e:
        log.warning("unreadable gray policy, using ratio 0: %r", e)
        return GrayPolicy()


class Consumer(Watching):
    """Providers of ``interface``, picked per call. Thread-safe; start once, stop once."""

    def __init__(self, hosts: str, interface: str, *, service: str | None = None,
                 balancer: str = "round_robin", env: str | None = None, quarantine_s: float = 5.0,
                 client: KazooClient | None = None,
                 on_change: Callable[[list[Provider]], None] | None = None) -> None:
        self.interface = validate_interface(interface)
        self.service = service
        self.env = env
        super().__init__(hosts, client)
        self._balancers: dict[GroupName, Balancer] = {"normal": make_balancer(balancer),
                                                      "gray": make_balancer(balancer)}
        self._quarantine_s = quarantine_s
        self._on_change = on_change
        self._lock = threading.Lock()
        self._providers: dict[str, Provider] = {}
        self._groups: dict[GroupName, list[Provider]] = {"normal": [], "gray": []}
        self._failed: dict[str, float] = {}
        self._policy = GrayPolicy()
        self.fallbacks = 0
        self.changes = 0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> Self:
        self._connect(timeout)
        path = providers_path(self.interface)
        self._client.ensure_path(path)
        ChildrenWatch(self._client, path, self._on_children)
        if self.service:
            DataWatch(self._client, gray_policy_path(self.service), self._on_policy)
        return self

    # --- watches (kazoo's thread) ----------------------------------------------------------

    def _on_children(self, children: list[str]) -> bool:
        if self._stopped:
            return False
        fresh: dict[str, Provider] = {}
        for node in children:
            known = self._providers.get(node)
            if known is not None:
                fresh[node] = known
                continue
            try:
                provider = parse_provider(node)
            except ValueError as e:
                log.warning("ignoring a provider node that is not a URL interface=%s error=%s",
                            self.interface, e)
                continue
            if provider.interface == self.interface and self._in_env(provider):
                fresh[node] = provider
        with self._lock:
            self._providers = fresh
            for group in self._groups:
                members = [p for p in fresh.values() if p.group == group]
                self._groups[group] = members
                self._balancers[group].sync(members)
            self.changes += 1
        if self._on_change is not None:
            self._on_change(list(fresh.values()))
        return True

    def _in_env(self, provider: Provider) -> bool:
        registered = provider.params.get("bizcloud.env")
        return self.env is None or registered is None or registered == self.env

    def _on_policy(self, data: bytes | None, _stat: Any) -> bool:
        if self._stopped:
            return False
        self._policy = read_gray_policy(data)
        return True

    # --- calls -----------------------------------------------------------------------------

    @property
    def policy(self) -> GrayPolicy:
        return self._policy

    def providers(self) -> list[Provider]:
        with self._lock:
            return list(self._providers.values())

    def mark_failed(self, provider: Provider) -> None:
        with self._lock:
            self._failed[provider.url] = time.monotonic() + self._quarantine_s

    def group_for(self, uid: str | None) -> GroupName:
        return self._policy.group_for(uid)

    def pick(self, uid: str | None = None, key: str | None = None) -> Provider:
        """A provider for this user's call; ``key`` (default: ``uid``) drives consistent hashing."""
        wanted = self._policy.group_for(uid)
        other: GroupName = "normal" if wanted == "gray" else "gray"
        with self._lock:
            order = [wanted, other] if self._policy.fallback else [wanted]
            for group in order:
                chosen = self._pick_in(group, key if key is not None else uid)
                if chosen is not None:
                    if group != wanted:
                        self.fallbacks += 1
                    return chosen
        raise NoProvider(f"no {wanted} provider of {self.interface}"
                         + ("" if self._policy.fallback else " (the gray policy forbids fallback)"))

    def _pick_in(self, group: GroupName, key: str | None) -> Provider | None:
        members = self._groups[group]
        if not members:
            return None
        now = time.monotonic()
        self._failed = {u: t for u, t in self._failed.items() if t > now}
        for _ in range(len(members)):
            chosen = self._balancers[group].pick(key)
            if chosen.url not in self._failed:
                return chosen
        healthy = [p for p in members if p.url not in self._failed]
        return healthy[0] if healthy else None
