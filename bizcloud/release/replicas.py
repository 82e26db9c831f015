"""Replica arithmetic of a gray release: how many pods the gray and normal Deployments get for a ratio.

Purely computational, no side effects. The gray controller (``gray_plan``) asks it for the two
replica counts whenever the traffic ratio moves, so that pods follow traffic: 30 % of users never
land on one gray pod while the normal group keeps nine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from bizcloud.errors import BizCloudError


@dataclass(frozen=True, slots=True)
class Split:
    """The replica counts of the two Deployments, ``<svc>-gray`` and ``<svc>``."""

    gray: int
    normal: int

    @property
    def total(self) -> int:
        return self.gray + self.normal


def check_ratio(ratio: float, *, field: str = "ratio") -> Fraction:
    """``ratio`` (percent) as an exact fraction, or a ``BizCloudError`` naming the field and the fix.

    The decimal the user typed (``str(ratio)``) is what counts, so 33.3 is 333/10 and not the
    binary float next to it: rounding ties are decided on the number people see.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio) \
            or not 0 <= ratio <= 100:
        raise BizCloudError(f"{field}: {ratio!r} is not a percentage",
                            hint=f"give {field} as a number from 0 to 100, e.g. --ratio 20")
    return Fraction(str(ratio))


def split(total: int, ratio: float) -> Split:
    """Split ``total`` pods between the gray and the normal group for ``ratio`` percent of users on gray.

    Rule: gray = ``T * r / 100`` rounded to the nearest whole pod, so the gray share of pods is the
    closest to the traffic share; an exact tie (half a pod) rounds up, toward gray, because the
    group under trial starts cold and the normal group is guarded below anyway. Then:

    - ``0 < r < 100``: at least one pod in each group (``1 <= gray <= T - 1``): a group that receives
      traffic always has a pod to serve it. With ``T = 1`` that takes two pods, one of each, so
      the answer is ``Split(1, 1)`` — the only case where the total exceeds ``T``.
    - ``r = 0`` → ``(0, T)``; ``r = 100`` → ``(T, 0)``.
    - ``T = 0`` (a service scaled to zero) → ``(0, 0)`` for every ratio: the split never invents
      capacity that was not asked for.

    Worked examples (T, r → gray, normal):

    - 10, 10 → 1, 9        10, 15 → 2, 8 (1.5 ties up)      10, 30 → 3, 7
    - 10, 1  → 1, 9 (0.1 pods, but never 0 gray while r > 0)
    - 10, 99 → 9, 1 (9.9 pods, but never 0 normal while r < 100)
    - 3, 50  → 2, 1 (1.5 ties up)   4, 50 → 2, 2     5, 33.3 → 2, 3 (1.665)
    - 2, 5   → 1, 1                 1, 20 → 1, 1 (one of each: total 2)
    - 1, 0   → 0, 1                 1, 100 → 1, 0     0, 50 → 0, 0

    Raises ``BizCloudError`` for a ratio outside 0-100 or a negative total.
    """
    exact = check_ratio(ratio)
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise BizCloudError(f"replicas: {total!r} is not a replica count",
                            hint="give the service's total replicas as a whole number, 0 or more")
    if total == 0:
        return Split(gray=0, normal=0)
    if exact == 0:
        return Split(gray=0, normal=total)
    if exact == 100:
        return Split(gray=total, normal=0)
    if total == 1:
        return Split(gray=1, normal=1)
    gray = math.floor(total * exact / 100 + Fraction(1, 2))
    gray = min(max(gray, 1), total - 1)
    return Split(gray=gray, normal=total - gray)
