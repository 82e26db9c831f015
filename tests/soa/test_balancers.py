"""Balancers: each spreads, round robin takes turns, consistent hash keeps keys where they were."""

from __future__ import annotations

import collections

import pytest

from bizcloud.soa.balancers import make_balancer
from bizcloud.soa.urls import Provider


def providers(n: int) -> list[Provider]:
    return [Provider(host=f"10.0.0.{i}", port=8080, interface="com.a.A") for i in range(1, n + 1)]


@pytest.mark.parametrize("name", ["random", "round_robin", "consistent_hash"])
def test_every_balancer_spreads_calls_over_every_provider(name: str) -> None:
    balancer = make_balancer(name)
    balancer.sync(providers(4))
    picks = collections.Counter(balancer.pick(f"user-{i}").host for i in range(4000))
    assert set(picks) == {p.host for p in providers(4)}
    assert min(picks.values()) > 4000 / 4 * 0.6


def test_round_robin_takes_turns() -> None:
    balancer = make_balancer("round_robin")
    balancer.sync(providers(3))
    assert [balancer.pick(None).host for _ in range(6)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"] * 2


def test_consistent_hash_moves_only_the_keys_of_a_removed_provider() -> None:
    balancer = make_balancer("consistent_hash")
    balancer.sync(providers(5))
    before = {f"user-{i}": balancer.pick(f"user-{i}").host for i in range(2000)}
    balancer.sync(providers(4))  # 10.0.0.5 leaves
    after = {key: balancer.pick(key).host for key in before}
    moved = [key for key in before if before[key] != after[key]]
    assert all(before[key] == "10.0.0.5" for key in moved)
    assert "10.0.0.5" not in after.values()


def test_unknown_balancers_are_refused() -> None:
    with pytest.raises(ValueError, match="balancer: 'fastest' is not one of random, round_robin"):
        make_balancer("fastest")
