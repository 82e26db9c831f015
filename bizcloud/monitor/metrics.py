"""The monitor's Prometheus metrics, defined once (prometheus_client's default registry)."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("bizcloud_monitor_events_total", "Instance events produced, by type.", ["type"])
SKIPPED = Counter("bizcloud_monitor_skipped_pods_total",
                  "Pods with the service label that are not instances, by reason.", ["reason"])
QUEUE_DEPTH = Gauge("bizcloud_monitor_queue_depth", "Events waiting per subscriber.", ["subscriber"])
DELIVERIES = Counter("bizcloud_monitor_deliveries_total", "Delivery attempts per subscriber and outcome.",
                     ["subscriber", "outcome"])
RELISTS = Counter("bizcloud_monitor_relists_total", "Full lists of pods (start, 410 Gone, errors).")
REPAIRS = Counter("bizcloud_monitor_reconcile_repairs_total",
                  "Catalog repairs by the reconciler: missing rows added, dirty rows removed.", ["kind"])
LEADER = Gauge("bizcloud_monitor_leader", "1 while this monitor holds the lease and dispatches.")
LATENCY = Histogram(
    "bizcloud_monitor_delivery_latency_seconds",
    "From the monitor seeing a pod transition to a subscriber having committed it.",
    ["subscriber"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """``count`` observations of one ``amount``, as ``count`` calls of ``observe`` would record them.

    prometheus_client observes one value at a time (a lock and two increments each), and the
    monitor's histograms saw 70,000 of them for a 10,000-pod list, mostly of the same few values:
    a batch's stages are one duration shared by all its events, and a relist stamps every event
    with one time. This adds to the sum and the one bucket ``observe`` would pick, by ``count``
    (``tests/monitor/test_metrics.py`` compares the two on the library in use).
    """
    if count <= 0:
        return
    if count == 1:
        histogram.observe(amount)
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(amount * count)
    for i, bound in enumerate(histogram._upper_bounds):
        if amount <= bound:
            histogram._buckets[i].inc(count)
            break


def observe_since(histogram: Histogram, now: float, times: Iterable[float]) -> None:
    """``now - t`` (at least 0) for every ``t``, equal ones observed together (``observe_many``)."""
    for at, count in collections.Counter(times).items():
        observe_many(histogram, max(0.0, now - at), count)
