"""Analysis of a gray step: the gateway's stats for one service and group over a window, and a verdict.

Purely computational, no side effects. The runner scrapes the gateway's ``/metrics`` (admin
port; rendered by ``bizcloud/gateway/lua/bizcloud/stats.lua``) at the start and at the end of a
window, hands both texts to ``parse``, then ``window(start, end, …)`` gives the gray group's
requests, error rate and p99 latency in that window, and ``verdict`` tells the gray state machine
(``gray_plan``) whether to advance, hold or roll back.

The series used, per ``service``, ``env`` and ``group`` (normal | gray):

- ``bizcloud_gateway_requests_total{…, code="2xx|3xx|4xx|5xx"}`` — answered requests by status class;
- ``bizcloud_gateway_upstream_errors_total{…}`` — failed connections to a peer (then retried);
- ``bizcloud_gateway_request_duration_seconds_bucket{…, le}`` — the cumulative latency histogram.

Counters only grow while nginx keeps its shared dict; a counter that went down between the two
scrapes means the gateway restarted, and then (as Prometheus' ``increase`` does) the end value
alone is the window's increase.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bizcloud.errors import BizCloudError

REQUESTS = "bizcloud_gateway_requests_total"
UPSTREAM_ERRORS = "bizcloud_gateway_upstream_errors_total"
BUCKETS = "bizcloud_gateway_request_duration_seconds_bucket"

SeriesKey = tuple[str, str, str]  # (service, env, group)


@dataclass(frozen=True)
class GroupStats:
    """One service+env+group's counters in one scrape (or their increase over a window)."""

    codes: Mapping[str, float] = field(default_factory=dict)           # "2xx" -> count
    upstream_errors: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)       # upper bound (inf too) -> cumulative

    @property
    def requests(self) -> float:
        return sum(self.codes.values())


@dataclass(frozen=True)
class Scrape:
    """The gateway's counters at one moment, by (service, env, group)."""

    groups: Mapping[SeriesKey, GroupStats]


class StatsError(BizCloudError):
    """The gateway's ``/metrics`` text could not be read."""


def parse(text: str) -> Scrape:
    """Read the gateway's Prometheus text into per-group counters (a sample without ``env``: ``""``)."""
    codes: dict[SeriesKey, dict[str, float]] = {}
    errors: dict[SeriesKey, float] = {}
    buckets: dict[SeriesKey, dict[float, float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if "service" not in labels or "group" not in labels:
                    continue
                key = (labels["service"], labels.get("env", ""), labels["group"])
                if sample.name == REQUESTS:
                    slot = codes.setdefault(key, {})
                    code = labels.get("code", "")
                    slot[code] = slot.get(code, 0.0) + sample.value
                elif sample.name == UPSTREAM_ERRORS:
                    errors[key] = errors.get(key, 0.0) + sample.value
                elif sample.name == BUCKETS and "le" in labels:
                    buckets.setdefault(key, {})[float(labels["le"])] = sample.value
    except ValueError as e:
        raise StatsError(f"gateway metrics: cannot parse the Prometheus text: {e}",
                         hint="scrape the gateway's admin port (/metrics on :8781 by default), "
                              "not its traffic port") from e
    keys = codes.keys() | errors.keys() | buckets.keys()
    return Scrape(groups={k: GroupStats(codes=codes.get(k, {}), upstream_errors=errors.get(k, 0.0),
                                        buckets=buckets.get(k, {})) for k in keys})


def _increase(start: float, end: float) -> float:
    return end if end < start else end - start


def _series_increase(start: GroupStats, end: GroupStats) -> GroupStats:
    reset = end.requests < start.requests or \
        any(end.codes.get(c, 0.0) < v for c, v in start.codes.items()) or \
        end.buckets.get(math.inf, 0.0) < start.buckets.get(math.inf, 0.0)
    if reset:   # the gateway restarted in the window: what it counted since is the whole increase
        return end
    return GroupStats(codes={c: _increase(start.codes.get(c, 0.0), v) for c, v in end.codes.items()},
                      upstream_errors=_increase(start.upstream_errors, end.upstream_errors),
                      buckets={le: _increase(start.buckets.get(le, 0.0), v) for le, v in end.buckets.items()})


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, interpolated linearly inside its bucket.

    As PromQL's ``histogram_quantile``: the first bucket's lower bound is 0; a rank in the ``+Inf``
    bucket answers the largest finite bound. ``None`` when the histogram is empty.
    """
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == math.inf:
                return lower
            in_bucket = count - below
            if in_bucket <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / in_bucket
        lower, below = upper, count
    return lower


@dataclass(frozen=True)
class Window:
    """One service+group's traffic between two scrapes."""

    service: str
    env: str | None
    group: str
    requests: float
    errors_5xx: float
    upstream_errors: float
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        """(5xx answers + failed peer connections) per request; 0 when nothing was asked."""
        return (self.errors_5xx + self.upstream_errors) / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "env": self.env, "group": self.group, "requests": self.requests,
                "errors_5xx": self.errors_5xx, "upstream_errors": self.upstream_errors,
                "error_rate": self.error_rate, "p99_ms": self.p99_ms}


def window(start: Scrape, end: Scrape, *, service: str, group: str, env: str | None = None) -> Window:
    """The increase of ``service``'s ``group`` between two scrapes (``env=None``: every environment)."""
    codes: dict[str, float] = {}
    errors = 0.0
    buckets: dict[float, float] = {}
    for key, stats in end.groups.items():
        if key[0] != service or key[2] != group or (env is not None and key[1] != env):
            continue
        delta = _series_increase(start.groups.get(key, GroupStats()), stats)
        for code, n in delta.codes.items():
            codes[code] = codes.get(code, 0.0) + n
        errors += delta.upstream_errors
        for le, n in delta.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + n
    p99 = histogram_quantile(0.99, buckets)
    return Window(service=service, env=env, group=group, requests=sum(codes.values()),
                  errors_5xx=codes.get("5xx", 0.0), upstream_errors=errors,
                  p99_ms=None if p99 is None else p99 * 1000.0)


@dataclass(frozen=True)
class Thresholds:
    """What a gray step must stay under. Defaults: 1 % errors, p99 of 1 s, 20 requests to judge at all."""

    max_error_rate: float = 0.01
    max_p99_ms: float = 1000.0
    min_requests: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise BizCloudError(f"max_error_rate: {self.max_error_rate!r} is not a fraction",
                                hint="give the highest tolerated error rate from 0 to 1, e.g. 0.01 for 1 %")
        if not self.max_p99_ms > 0:
            raise BizCloudError(f"max_p99_ms: {self.max_p99_ms!r} is not a latency",
                                hint="give the highest tolerated p99 latency in milliseconds, above 0")
        if self.min_requests < 1:
            raise BizCloudError(f"min_requests: {self.min_requests!r} is too small",
                                hint="give the fewest requests a verdict needs, 1 or more")

    def to_json(self) -> dict[str, Any]:
        return {"max_error_rate": self.max_error_rate, "max_p99_ms": self.max_p99_ms,
                "min_requests": self.min_requests}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Thresholds:
        default = cls()
        return cls(max_error_rate=float(data.get("max_error_rate", default.max_error_rate)),
                   max_p99_ms=float(data.get("max_p99_ms", default.max_p99_ms)),
                   min_requests=int(data.get("min_requests", default.min_requests)))


class Outcome(StrEnum):
    OK = "ok"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str


def verdict(win: Window, thresholds: Thresholds) -> Verdict:
    """Judge a window against the thresholds.

    - More errors than ``max_error_rate x min_requests`` fail the step however few requests came
      (the window would fail even had it reached ``min_requests`` with every other request fine),
      so a broken version is rolled back without waiting for traffic.
    - Fewer than ``min_requests`` requests otherwise is ``inconclusive``: the controller holds the
      step (it neither promotes nor advances the ratio) and analyses the next window.
    - Then the error rate, then the p99 latency, against their maxima.
    """
    where = f"{win.service} {win.group}"
    errors = win.errors_5xx + win.upstream_errors
    detail = (f"{errors:g} errors ({win.errors_5xx:g} 5xx, {win.upstream_errors:g} upstream) "
              f"in {win.requests:g} requests")
    if win.requests < thresholds.min_requests:
        if errors > thresholds.max_error_rate * thresholds.min_requests:
            return Verdict(Outcome.FAIL, f"{where}: {detail}: more errors than "
                                         f"{thresholds.max_error_rate:.2%} of {thresholds.min_requests}")
        return Verdict(Outcome.INCONCLUSIVE,
                       f"{where}: only {win.requests:g} requests in the window, a verdict needs "
                       f"{thresholds.min_requests}: holding the step")
    if win.error_rate > thresholds.max_error_rate:
        return Verdict(Outcome.FAIL, f"{where}: error rate {win.error_rate:.2%} over the "
                                     f"{thresholds.max_error_rate:.2%} allowed ({detail})")
    if win.p99_ms is not None and win.p99_ms > thresholds.max_p99_ms:
        return Verdict(Outcome.FAIL, f"{where}: p99 latency {win.p99_ms:.0f} ms over the "
                                     f"{thresholds.max_p99_ms:g} ms allowed")
    p99 = "n/a" if win.p99_ms is None else f"{win.p99_ms:.0f} ms"
    return Verdict(Outcome.OK, f"{where}: error rate {win.error_rate:.2%}, p99 {p99} in "
                               f"{win.requests:g} requests")
