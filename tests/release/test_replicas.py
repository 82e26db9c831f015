"""Replica arithmetic: the docstring's worked examples as a table, and the rules over every T and ratio."""

from __future__ import annotations

from fractions import Fraction

import pytest

from bizcloud.errors import BizCloudError
from bizcloud.release.replicas import Split, split

WORKED = [
    # total, ratio, gray, normal
    (10, 10, 1, 9),
    (10, 15, 2, 8),      # 1.5 pods: a tie rounds up, toward gray
    (10, 30, 3, 7),
    (10, 1, 1, 9),       # 0.1 pods: never 0 gray while the ratio is above 0
    (10, 99, 9, 1),      # 9.9 pods: never 0 normal while the ratio is below 100
    (10, 0, 0, 10),
    (10, 100, 10, 0),
    (3, 50, 2, 1),
    (4, 50, 2, 2),
    (5, 33.3, 2, 3),     # 1.665 pods
    (2, 5, 1, 1),
    (2, 95, 1, 1),
    (1, 20, 1, 1),       # one of each: the only case where the total exceeds T
    (1, 0, 0, 1),
    (1, 100, 1, 0),
    (0, 0, 0, 0),
    (0, 50, 0, 0),       # scaled to zero: no capacity is invented
    (0, 100, 0, 0),
    (20, 12.5, 3, 17),   # 2.5 ties up
    (100, 0.5, 1, 99),   # 0.5 pods: a tie, and never 0 gray
    (7, 20, 1, 6),       # 1.4
    (7, 30, 2, 5),       # 2.1
]


@pytest.mark.parametrize(("total", "ratio", "gray", "normal"), WORKED)
def test_worked_examples(total: int, ratio: float, gray: int, normal: int) -> None:
    assert split(total, ratio) == Split(gray=gray, normal=normal)


def _feasible(total: int, ratio: Fraction) -> range:
    if ratio == 0:
        return range(0, 1)
    if ratio == 100:
        return range(total, total + 1)
    return range(1, total)


RATIOS = [*range(101), 0.5, 2.5, 12.5, 33.3, 66.7, 99.5, 99.9]


def test_every_total_and_ratio_follows_the_rules() -> None:
    """Over T in 0..200 and every whole ratio (plus fractional ones): the stated rule, exactly."""
    for total in range(201):
        previous = -1
        for ratio in RATIOS:
            got = split(total, ratio)
            exact = Fraction(str(ratio))
            if total == 0:
                assert got == Split(0, 0)
                continue
            if 0 < exact < 100:
                assert got.gray >= 1, (total, ratio)
                assert got.normal >= 1, (total, ratio)
            if total == 1 and 0 < exact < 100:
                assert got == Split(1, 1)
                continue
            assert got.total == total, (total, ratio)
            # the closest whole number of gray pods among the allowed ones, ties toward gray
            target = total * exact / 100
            best = min(_feasible(total, exact), key=lambda g: (abs(g - target), -g))
            assert got.gray == best, (total, ratio, got)
            if isinstance(ratio, int):  # whole ratios in increasing order: gray never shrinks
                assert got.gray >= previous, (total, ratio)
                previous = got.gray


@pytest.mark.parametrize("ratio", [-1, -0.01, 100.01, 250, float("nan"), float("inf"), True])
def test_a_ratio_outside_0_100_names_the_field_and_the_fix(ratio: float) -> None:
    with pytest.raises(BizCloudError) as caught:
        split(10, ratio)
    assert caught.value.message.startswith("ratio:")
    assert "0 to 100" in caught.value.hint


@pytest.mark.parametrize("total", [-1, -100])
def test_a_negative_total_names_the_field_and_the_fix(total: int) -> None:
    with pytest.raises(BizCloudError) as caught:
        split(total, 10)
    assert caught.value.message.startswith("replicas:")
    assert "0 or more" in caught.value.hint
