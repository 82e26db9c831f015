"""The monitor's Prometheus metrics, defined once (prometheus_client's default registry)."""

from __future__ import annotations

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
