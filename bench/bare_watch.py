"""The limit for the monitor benchmark: a bare watch loop that only decodes events and counts.

`bench/monitor_throughput.py` runs this beside BizCloud's monitor and the kopf peer on the same
pod stream. It does the least any consumer must do: read the same watch URL as the monitor's
informer (pods labelled ``bizcloud.io/service``, all namespaces), decode each line with the
monitor's decoder (orjson), and keep the set of serving pods (an IP, Ready, not being deleted)
so it can say when the cluster reached a given number of them — no diff, no dispatch, no
database. Whatever it takes is what the API server, TLS and JSON decoding cost; a real consumer
can only be slower.

Usage: ``python -m bench.bare_watch --kubeconfig PATH --report-at 1 --report-at 10001``. Each time
the serving count changes to one of the ``--report-at`` values it prints one JSON line
``{"serving": n, "events": e, "at": unix_time}`` on stdout; it runs until killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import orjson

from bizcloud.kube import config as kube_config

SERVICE_LABEL = "bizcloud.io/service"


def _serving(obj: dict[str, object]) -> bool:
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    assert isinstance(status, dict) and isinstance(meta, dict)
    if not status.get("podIP") or meta.get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def watch(kubeconfig: Path, report_at: set[int]) -> None:
    """Watch until the process is killed (or the server ends the stream: then watch again)."""
    config = kube_config.load(kubeconfig)
    serving: set[str] = set()
    events = 0
    params: dict[str, str] = {"watch": "true", "labelSelector": SERVICE_LABEL,
                              "allowWatchBookmarks": "true", "timeoutSeconds": "3600"}
    with httpx.Client(base_url=config.server, verify=config.ssl_context(),
                      timeout=httpx.Timeout(30.0, read=None)) as client:
        while True:
            with client.stream("GET", "/api/v1/pods", params=params) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line:
                        continue
                    event = orjson.loads(line)
                    events += 1
                    obj = event["object"]
                    meta = obj["metadata"]
                    if version := meta.get("resourceVersion"):
                        params["resourceVersion"] = version
                    if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    before = len(serving)
                    if event["type"] != "DELETED" and _serving(obj):
                        serving.add(meta["uid"])
                    else:
                        serving.discard(meta["uid"])
                    if len(serving) != before and len(serving) in report_at:
                        print(json.dumps({"serving": len(serving), "events": events, "at": time.time()}),
                              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_watch")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--report-at", type=int, action="append", default=[])
    args = parser.parse_args()
    print(json.dumps({"started": time.time()}), flush=True)
    try:
        watch(args.kubeconfig, set(args.report_at))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
