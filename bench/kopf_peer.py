"""The peer in the monitor benchmark: the catalog half of BizCloud's monitor written as a kopf operator.

`bench/monitor_throughput.py` runs it as its own process beside BizCloud's monitor, on the same
pod stream: ``kopf run --standalone --all-namespaces --quiet bench/kopf_peer.py`` with
``KUBECONFIG`` and ``BENCH_KOPF_DB`` (a SQLite file) in the environment. Per event it does the same
minimum work as ours, so the difference measured is the framework's: the same pure rules
(``instance_from_pod``, ``events_for`` against the last state of that pod, kept in memory as our
monitor does) and the same durable write (``CatalogStore.apply_event``, one committing transaction
per instance event, from a worker thread as our catalog subscriber does). It skips what ours adds
on top — the dispatcher's journal row per delivery, reconciliation, leader election — so kopf is
given the lighter load. Kopf is tuned for its best showing: no Kubernetes Events posted, warnings
only in its log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import kopf

from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.monitor.instances import Skipped, events_for, instance_from_pod
from bizcloud.monitor.model import Instance

SERVICE_LABEL = "bizcloud.io/service"

_state: dict[str, CatalogStore] = {}  # "store", set at start-up
_last: dict[str, Instance] = {}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.watching.server_timeout = 600
    engine = make_engine(f"sqlite:///{os.environ['BENCH_KOPF_DB']}")
    await asyncio.to_thread(migrate_engine, engine)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _state["store"] = CatalogStore(engine)


@kopf.on.event("", "v1", "pods", labels={SERVICE_LABEL: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
    """Pod -> instance -> (old, new) events -> one committed catalog transaction per event."""
    store = _state["store"]
    obj = event["object"]
    meta = obj.get("metadata") or {}
    uid = meta.get("uid", "")
    new: Instance | None = None
    if event.get("type") != "DELETED":
        result = instance_from_pod(obj)
        new = None if isinstance(result, Skipped) else result
    old = _last.get(uid)
    for change in events_for(old, new, resource_version=meta.get("resourceVersion", ""),
                             observed_at=time.time()):
        await asyncio.to_thread(store.apply_event, event=change)
    if new is None:
        _last.pop(uid, None)
    else:
        _last[uid] = new
