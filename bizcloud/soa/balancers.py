"""Load balancers of the consumer SDK: a table of algorithms, each ``sync`` then ``pick``.

Standard library only. As in ingress-nginx's balancer table, ``sync`` receives the current
providers (and returns at once when they did not change) and ``pick`` never does I/O. The
consistent hash follows Dubbo's ``ConsistentHashLoadBalance``: 160 virtual nodes per provider,
placed by MD5, so adding or removing one provider moves only the keys next to it.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from bizcloud.soa.urls import Provider

VIRTUAL_NODES = 160


class Balancer(Protocol):
    def sync(self, providers: Sequence[Provider]) -> None: ...

    def pick(self, key: str | None) -> Provider: ...


class RandomBalancer:
    def __init__(self) -> None:
        self._providers: list[Provider] = []

    def sync(self, providers: Sequence[Provider]) -> None:
        self._providers = list(providers)

    def pick(self, key: str | None) -> Provider:
        return random.choice(self._providers)


class RoundRobinBalancer:
    """Each provider in turn, in address order; the turn survives a provider list change."""

    def __init__(self) -> None:
        self._providers: list[Provider] = []
        self._counter = itertools.count()

    def sync(self, providers: Sequence[Provider]) -> None:
        self._providers = sorted(providers, key=lambda p: (p.host, p.port))

    def pick(self, key: str | None) -> Provider:
        return self._providers[next(self._counter) % len(self._providers)]


def _points(address: str) -> list[int]:
    """Dubbo's four 32-bit points per MD5 of ``address + i``, for i in 0..VIRTUAL_NODES/4."""
    points = []
    for i in range(VIRTUAL_NODES // 4):
        digest = hashlib.md5(f"{address}{i}".encode(), usedforsecurity=False).digest()
        points += [int.from_bytes(digest[h * 4:h * 4 + 4], "little") for h in range(4)]
    return points


class ConsistentHashBalancer:
    """The same key reaches the same provider while that provider lives; no key means random."""

    def __init__(self) -> None:
        self._ring: list[int] = []
        self._owners: list[Provider] = []
        self._members: frozenset[str] = frozenset()

    def sync(self, providers: Sequence[Provider]) -> None:
        members = frozenset(p.url for p in providers)
        if members == self._members:
            return
        ring = sorted((point, p.url, p) for p in providers for point in _points(p.address))
        self._ring = [point for point, _, _ in ring]
        self._owners = [p for _, _, p in ring]
        self._members = members

    def pick(self, key: str | None) -> Provider:
        if key is None:
            return random.choice(self._owners)
        digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()
        point = int.from_bytes(digest[:4], "little")
        index = bisect.bisect_left(self._ring, point) % len(self._ring)
        return self._owners[index]


BALANCERS = {"random": RandomBalancer, "round_robin": RoundRobinBalancer,
             "consistent_hash": ConsistentHashBalancer}


def make_balancer(name: str) -> Balancer:
    try:
        factory: type[Balancer] = BALANCERS[name]  # type: ignore[assignment]
    except KeyError:
        raise ValueError(f"balancer: {name!r} is not one of {', '.join(BALANCERS)}") from None
    return factory()
