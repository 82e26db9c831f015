"""Analysis of a gray step: parsing the gateway's stats, window deltas, p99, and the verdict table.

``data/gateway_start.prom`` and ``data/gateway_end.prom`` are two scrapes of the running gateway's
``/metrics`` (admin port) around 41 requests with ``X-User-Id`` set; ``data/gateway_gray_*.prom``
are scrapes of a real gateway in front of a normal and a failing gray backend
(``test_analysis_gateway.py`` checks the same against a live one).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import (
    GroupStats,
    Outcome,
    Scrape,
    StatsError,
    Thresholds,
    Window,
    histogram_quantile,
    parse,
    verdict,
    window,
)

DATA = Path(__file__).parent / "data"
INF = math.inf


def _read(name: str) -> Scrape:
    return parse((DATA / name).read_text())


def test_real_scrapes_of_the_running_gateway() -> None:
    start, end = _read("gateway_start.prom"), _read("gateway_end.prom")
    assert ("demo-web", "dev", "normal") in end.groups
    win = window(start, end, service="demo-web", env="dev", group="normal")
    assert win.requests == 41
    assert win.errors_5xx == 0 and win.upstream_errors == 0 and win.error_rate == 0
    assert win.p99_ms is not None and 50 < win.p99_ms <= 100   # two of 41 took 50-100 ms
    assert window(start, end, service="demo-web", env="dev", group="gray").requests == 0
    assert verdict(win, Thresholds()).outcome is Outcome.OK


def test_real_scrapes_of_a_failing_gray_group() -> None:
    start, end = _read("gateway_gray_start.prom"), _read("gateway_gray_end.prom")
    gray = window(start, end, service="shop", env="dev", group="gray")
    normal = window(start, end, service="shop", env="dev", group="normal")
    assert gray.requests > 0 and gray.errors_5xx == gray.requests
    assert normal.requests > 0 and normal.errors_5xx == 0
    assert gray.requests + normal.requests == 200
    assert verdict(gray, Thresholds()).outcome is Outcome.FAIL
    assert verdict(normal, Thresholds()).outcome is Outcome.OK


def _text(series: dict[tuple[str, str, str], tuple[dict[str, int], int, list[int]]]) -> str:
    """Prometheus text shaped exactly like stats.lua's, from (codes, upstream errors, bucket counts)."""
    bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    lines = ["# TYPE bizcloud_gateway_requests_total counter"]
    for (svc, env, group), (codes, _, _) in series.items():
        lines += [f'bizcloud_gateway_requests_total{{service="{svc}",env="{env}",group="{group}",'
                  f'code="{c}"}} {n}' for c, n in codes.items()]
    lines.append("# TYPE bizcloud_gateway_upstream_errors_total counter")
    for (svc, env, group), (_, errors, _) in series.items():
        lines.append(f'bizcloud_gateway_upstream_errors_total{{service="{svc}",env="{env}",group="{group}"}} '
                     f"{errors}")
    lines.append("# TYPE bizcloud_gateway_request_duration_seconds histogram")
    for (svc, env, group), (_, _, counts) in series.items():
        lbl = f'service="{svc}",env="{env}",group="{group}"'
        total = 0
        for le, n in zip(bounds, counts, strict=True):
            total += n
            lines.append(f'bizcloud_gateway_request_duration_seconds_bucket{{{lbl},le="{le}"}} {total}')
        lines.append(f"bizcloud_gateway_request_duration_seconds_count{{{lbl}}} {total}")
    return "\n".join(lines) + "\n"


ZERO = [0] * 12
GRAY = ("shop", "dev", "gray")


def test_window_is_the_increase_per_group_and_env() -> None:
    start = parse(_text({GRAY: ({"2xx": 10}, 1, [10, *ZERO[1:]]),
                         ("shop", "qa", "gray"): ({"2xx": 5}, 0, [5, *ZERO[1:]])}))
    end = parse(_text({GRAY: ({"2xx": 100, "5xx": 3, "4xx": 7}, 2, [60, 40, 10, *ZERO[3:]]),
                       ("shop", "qa", "gray"): ({"2xx": 25}, 0, [25, *ZERO[1:]]),
                       ("shop", "dev", "normal"): ({"5xx": 50}, 0, [50, *ZERO[1:]])}))
    dev = window(start, end, service="shop", env="dev", group="gray")
    assert (dev.requests, dev.errors_5xx, dev.upstream_errors) == (100, 3, 1)
    assert dev.error_rate == pytest.approx(0.04)
    both = window(start, end, service="shop", group="gray")
    assert both.requests == 120
    assert window(start, end, service="other", group="gray").requests == 0


def test_a_gateway_restart_in_the_window_counts_what_it_saw_since() -> None:
    start = parse(_text({GRAY: ({"2xx": 500}, 9, [500, *ZERO[1:]])}))
    end = parse(_text({GRAY: ({"2xx": 30, "5xx": 2}, 1, [32, *ZERO[1:]])}))
    win = window(start, end, service="shop", env="dev", group="gray")
    assert (win.requests, win.errors_5xx, win.upstream_errors) == (32, 2, 1)


QUANTILES = [
    # q, cumulative buckets, expected (PromQL histogram_quantile)
    (0.99, {0.1: 0, 0.2: 100, INF: 100}, 0.1 + 0.1 * 99 / 100),
    (0.5, {0.1: 50, 0.2: 100, INF: 100}, 0.1),
    (0.5, {0.1: 100, INF: 100}, 0.05),                 # first bucket's lower bound is 0
    (0.99, {0.1: 90, 0.5: 90, INF: 100}, 0.5),         # rank in +Inf: the largest finite bound
    (0.99, {0.1: 0, INF: 0}, None),                    # empty
    (0.99, {}, None),
    (0.9, {0.005: 0, 0.01: 0, 0.025: 10, 0.05: 10, INF: 10}, 0.01 + 0.015 * 9 / 10),
]


@pytest.mark.parametrize(("q", "buckets", "expected"), QUANTILES)
def test_histogram_quantile_interpolates_like_promql(q: float, buckets: dict[float, float],
                                                     expected: float | None) -> None:
    got = histogram_quantile(q, buckets)
    assert got == (None if expected is None else pytest.approx(expected))


def test_p99_in_the_window_comes_from_bucket_deltas() -> None:
    start = parse(_text({GRAY: ({"2xx": 1000}, 0, [0, 0, 0, 0, 0, 0, 0, 0, 1000, 0, 0, 0])}))  # old slow ones
    end = parse(_text({GRAY: ({"2xx": 1100}, 0, [100, 0, 0, 0, 0, 0, 0, 0, 1000, 0, 0, 0])}))
    win = window(start, end, service="shop", env="dev", group="gray")
    assert win.p99_ms == pytest.approx(5 * 0.99)       # the window's 100 fast requests only


def _win(requests: float, e5: float = 0, up: float = 0, p99: float | None = 10.0) -> Window:
    return Window(service="shop", env="dev", group="gray", requests=requests, errors_5xx=e5,
                  upstream_errors=up, p99_ms=p99)


VERDICTS = [
    # window, thresholds, outcome, words in the reason
    (_win(100), Thresholds(), Outcome.OK, "error rate 0.00%"),
    (_win(100, e5=1), Thresholds(), Outcome.OK, "1.00%"),                 # at the limit is fine
    (_win(100, e5=2), Thresholds(), Outcome.FAIL, "error rate 2.00% over the 1.00% allowed"),
    (_win(100, up=1, e5=1), Thresholds(), Outcome.FAIL, "1 upstream"),
    (_win(100, p99=1500), Thresholds(), Outcome.FAIL, "p99 latency 1500 ms over the 1000 ms allowed"),
    (_win(100, p99=1500), Thresholds(max_p99_ms=2000), Outcome.OK, "p99 1500 ms"),
    (_win(5), Thresholds(), Outcome.INCONCLUSIVE, "only 5 requests"),
    (_win(0, p99=None), Thresholds(), Outcome.INCONCLUSIVE, "holding the step"),
    (_win(5, e5=1), Thresholds(), Outcome.FAIL, "more errors than"),      # fails even with few requests
    (_win(5, e5=1), Thresholds(max_error_rate=0.1), Outcome.INCONCLUSIVE, "only 5"),  # 1 < 0.1 x 20
    (_win(5, e5=3), Thresholds(max_error_rate=0.1), Outcome.FAIL, "3 errors"),
    (_win(3), Thresholds(min_requests=3), Outcome.OK, "3 requests"),
    (_win(30, e5=3), Thresholds(max_error_rate=0.1), Outcome.OK, "10.00%"),
]


@pytest.mark.parametrize(("win", "thresholds", "outcome", "words"), VERDICTS)
def test_verdicts(win: Window, thresholds: Thresholds, outcome: Outcome, words: str) -> None:
    got = verdict(win, thresholds)
    assert got.outcome is outcome
    assert words in got.reason


@pytest.mark.parametrize(("kwargs", "field"), [({"max_error_rate": 1.5}, "max_error_rate"),
                                               ({"max_error_rate": -0.1}, "max_error_rate"),
                                               ({"max_p99_ms": 0}, "max_p99_ms"),
                                               ({"min_requests": 0}, "min_requests")])
def test_bad_thresholds_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(BizCloudError) as caught:
        Thresholds(**kwargs)  # type: ignore[arg-type]
    assert caught.value.message.startswith(f"{field}:") and caught.value.hint


def test_thresholds_round_trip_as_json() -> None:
    t = Thresholds(max_error_rate=0.05, max_p99_ms=250, min_requests=7)
    assert Thresholds.from_json(t.to_json()) == t
    assert Thresholds.from_json({}) == Thresholds()


def test_text_that_is_not_prometheus_is_refused_with_the_fix() -> None:
    with pytest.raises(StatsError) as caught:
        parse('bizcloud_gateway_requests_total{service="x" 1\n')
    assert "admin port" in caught.value.hint
    assert parse("") == Scrape(groups={})
    assert GroupStats().requests == 0
