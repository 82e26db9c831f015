"""Warm `cluster up` time: binaries cached, pause image present, to a Ready node."""

from __future__ import annotations

import time

from bizcloud.cluster import lifecycle
from bizcloud.settings import Settings


def run(settings: Settings, *, rounds: int = 3) -> dict[str, object]:
    started = time.perf_counter()
    lifecycle.up(settings, mode="real")
    first = time.perf_counter() - started
    warm: list[float] = []
    for _ in range(rounds):
        lifecycle.down(settings)
        started = time.perf_counter()
        lifecycle.up(settings, mode="real")
        warm.append(time.perf_counter() - started)
    return {"first_up_s": first, "warm_up_s": warm, "warm_up_median_s": sorted(warm)[len(warm) // 2]}
