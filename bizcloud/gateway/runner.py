"""`bizcloud gateway`: seed from the catalog, start nginx on the seed, then follow the catalog.

The process owns its nginx (``process.py``) and one syncer (``syncer.py``) that pushes to this
nginx and to any other gateway named in ``peers``. It blocks on the first seed before nginx
starts, and whenever nginx dies it re-reads the catalog, writes a fresh seed and starts it
again — so no nginx of ours ever answers a request without the catalog's routes. nginx's own
reloads never happen: instances, routes and gray policies all arrive on the admin port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import httpx

from bizcloud.gateway.errors import GatewayError
from bizcloud.gateway.nginxconf import GatewayConfig, GatewayPaths
from bizcloud.gateway.process import Nginx
from bizcloud.gateway.syncer import CatalogReader, Syncer, sleep_or_stop
from bizcloud.gateway.upstreams import RoutingState

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.05


async def _seed(catalog_url: str, stop: asyncio.Event) -> RoutingState | None:
    """The catalog's state, retried until it answers (or ``stop``)."""
    delay = 0.2
    async with httpx.AsyncClient(base_url=catalog_url, timeout=10) as client:
        while not stop.is_set():
            try:
                return await CatalogReader(client).seed()
            except GatewayError as e:
                log.warning("waiting for the catalog: %s", e.one_line())
            await sleep_or_stop(stop, delay)
            delay = min(delay * 2, 5.0)
    return None


async def run_gateway(*, config: GatewayConfig, prefix: Path, catalog_url: str, stop: asyncio.Event,
                      peers: Sequence[str] = (), wait_s: float = 30.0, syncer: Syncer | None = None) -> Nginx:
    """Run until ``stop``; returns the (stopped) nginx handle, whose ``starts`` tests read.

    ``syncer``: one made by the caller (tests read its counters); its targets must be this nginx's
    admin URL and ``peers``. The monitor's pushes (``direct.py``) go to nginx's admin port itself."""
    nginx = Nginx(config, GatewayPaths(prefix))
    own = f"http://127.0.0.1:{config.admin_port}"
    syncer = syncer or Syncer(catalog_url=catalog_url, targets=[own, *peers], wait_s=wait_s)
    seed = await _seed(catalog_url, stop)
    if seed is None:
        return nginx
    await asyncio.to_thread(nginx.start, seed.full())
    syncer.adopt(seed, current=[own])
    following = asyncio.create_task(syncer.run(stop), name="gateway-syncer")
    try:
        while not stop.is_set():
            if not nginx.alive():
                log.warning("nginx exited (pid %s): re-seeding from the catalog and starting it again",
                            nginx.pid)
                fresh = await _seed(catalog_url, stop)
                if fresh is None:
                    break
                if syncer.state is not None and syncer.state.revision > fresh.revision:
                    fresh = syncer.state
                await asyncio.to_thread(nginx.start, fresh.full())
                syncer.mark_stale(own)  # catch up on anything committed between the seed and now
            await sleep_or_stop(stop, WATCH_INTERVAL_S)
    finally:
        stop.set()
        await following
        await asyncio.to_thread(nginx.stop)
    return nginx
