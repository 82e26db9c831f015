"""What every benchmark shares: an isolated cluster beside the developer's, and percentiles.

The benchmark cluster has its own name, state directory, ports, bridge, pod range and cgroup
root, so `make bench` neither needs nor disturbs a cluster started by `make up`.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bizcloud.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"


def bench_settings(state_dir: Path) -> Settings:
    return Settings(
        state_dir=state_dir, cluster_name="bizbench", node_name="bizbench-node", cni_bridge="bizbench0",
        pod_cidr="10.89.0.0/16", etcd_port=32379, etcd_peer_port=32380, apiserver_port=36443,
        controller_manager_port=30257, scheduler_port=30259, kubelet_port=30250, kubelet_healthz_port=30248,
        kwok_port=30247,
    )


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile, as Kubernetes' SLO measurements report them."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "min": min(values), "p50": percentile(values, 50),
            "p90": percentile(values, 90), "p99": percentile(values, 99), "max": max(values),
            "mean": statistics.fmean(values)}
