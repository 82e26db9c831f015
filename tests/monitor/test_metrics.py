"""``observe_many`` records what as many ``observe`` calls would, on the prometheus_client in use."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Histogram

from bizcloud.monitor.metrics import observe_many, observe_since

BUCKETS = (0.005, 0.01, 0.1, 1.0)


def recorded(fill: Callable[[Histogram], None]) -> dict[str, float]:
    """Every bucket, the count and the sum the registry exposes after ``fill``."""
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "test", ["lane"], buckets=BUCKETS, registry=registry)
    fill(histogram.labels("a"))
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for metric in registry.collect() for s in metric.samples if not s.name.endswith("_created")}


def same(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key   # the sum: one product against many additions


@pytest.mark.parametrize(("amount", "count"),
                         [(0.0, 3), (0.005, 2), (0.05, 2000), (0.5, 1), (7.0, 10), (0.2, 0)])
def test_observe_many_equals_observing_one_at_a_time(amount: float, count: int) -> None:
    def one_by_one(h: Histogram) -> None:
        for _ in range(count):
            h.observe(amount)

    same(recorded(lambda h: observe_many(h, amount, count)), recorded(one_by_one))


def test_observe_since_groups_equal_times_and_floors_at_zero() -> None:
    times = [10.0] * 500 + [9.99] * 3 + [10.5]   # the last is "in the future": observed as 0

    def one_by_one(h: Histogram) -> None:
        for t in times:
            h.observe(max(0.0, 10.2 - t))

    same(recorded(lambda h: observe_since(h, 10.2, times)), recorded(one_by_one))
