"""The feed from the catalog to the gateways: seed, then follow the change stream and push.

One ``Syncer`` reads the catalog over its REST API (reads only: ``/instances``, ``/routes``,
``/gray``, ``/changes``), keeps a ``RoutingState`` and pushes to every gateway's admin endpoint:
the full state first and whenever a gateway lost track (it answered 409, failed, or restarted),
then one delta per page of changes. A 410 from the change stream (the catalog's database was
replaced) re-seeds. Pushes to several gateways go out concurrently; a gateway that does not
answer is retried with the full state on the next round and never holds the others up.

The monitor also pushes each commit straight into nginx (``direct.py``), so a gateway is often
ahead of its syncer. That is fine: a delta names the revision it continues, nginx applies it over
any state from that revision on (each delta's puts and drops are peers' states at its revision,
so applying one again changes nothing) and ignores one older than its state. The syncer is the
authority that brings whatever a push missed, and what it pushes for a peer overrides the push.
Every ``verify_s`` it also reads each gateway's table back: one that holds other peers than the
catalog at the same revision (a wrong push, for a peer the stream never touches again) is logged
and gets the full state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bizcloud.gateway.errors import GatewayError
from bizcloud.gateway.upstreams import RoutingState

log = logging.getLogger(__name__)

PUSH_PATH = "/bizcloud/upstreams"
JSON = {"Content-Type": "application/json"}
VERIFY_S = 60.0   # how often each gateway's table is read back and compared


class CatalogReader:
    """The catalog's API, as the syncer reads it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _get(self, path: str, **params: Any) -> Any:
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as e:
            raise GatewayError(f"cannot read the catalog at {self._client.base_url}{path}: {e!r}",
                               hint="is `bizcloud server` running?") from e
        if response.status_code == 410:
            raise StreamReset(response.text)
        if response.status_code != 200:
            raise GatewayError(f"the catalog answered {response.status_code} for {path}: "
                               f"{response.text[:200]}")
        return response.json()

    async def seed(self) -> RoutingState:
        """Instances at a revision, then routes and policies (at least as new: later changes re-read them)."""
        snapshot = await self._get("/api/v1/instances")
        routes = await self.routes()
        policies = await self._get("/api/v1/gray")
        return RoutingState.seed(revision=int(snapshot["revision"]), instances=snapshot["instances"],
                                 routes=routes, policies=policies)

    async def routes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._get("/api/v1/routes")
        return result

    async def changes(self, *, since: int, wait: float, limit: int = 1000) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/api/v1/changes", since=since, wait=wait, limit=limit)
        return result


class StreamReset(Exception):  # noqa: N818
    """The change stream answered 410: take a new snapshot."""


class Syncer:
    """Keeps every gateway in ``targets`` (admin base URLs) at the catalog's state."""

    def __init__(self, *, catalog_url: str, targets: Sequence[str], wait_s: float = 30.0,
                 verify_s: float = VERIFY_S) -> None:
        self.catalog_url = catalog_url
        self.targets = list(targets)
        self.wait_s = wait_s
        self.verify_s = verify_s
        self._verify_at = time.monotonic() + verify_s
        self.repairs = 0   # gateways found holding other peers than the catalog, and sent the full state
        self.state: RoutingState | None = None
        self._stale: set[str] = set(self.targets)   # targets that need the full state
        self.pushes = 0
        self.last_push_at: float | None = None

    def adopt(self, state: RoutingState, *, current: Sequence[str] = ()) -> None:
        """Start from ``state`` (already read from the catalog); ``current`` gateways hold it already."""
        self.state = state
        self._stale = set(self.targets) - set(current)

    def mark_stale(self, target: str) -> None:
        """The gateway at ``target`` restarted or lost track: send it the full state next."""
        self._stale.add(target)

    async def seed(self, client: httpx.AsyncClient) -> RoutingState:
        self.state = await CatalogReader(client).seed()
        return self.state

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the catalog until ``stop``; errors are logged and retried with a short back-off."""
        async with httpx.AsyncClient(base_url=self.catalog_url, timeout=self.wait_s + 10) as catalog, \
                httpx.AsyncClient(timeout=10) as gateways:
            reader = CatalogReader(catalog)
            backoff = 0.2
            while not stop.is_set():
                try:
                    await self._round(reader, gateways, stop)
                    backoff = 0.2
                except StreamReset as e:
                    log.warning("change stream reset (%s): re-seeding from the catalog", e)
                    self.state = None
                except GatewayError as e:
                    log.warning("syncer: %s", e.one_line())
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 5.0)

    async def _round(self, reader: CatalogReader, gateways: httpx.AsyncClient, stop: asyncio.Event) -> None:
        if self.state is None:
            self.state = await reader.seed()
            self._stale = set(self.targets)
            log.info("seeded from the catalog revision=%s upstreams=%s routes=%s", self.state.revision,
                     len(self.state.upstreams), len(self.state.routes))
        state = self.state
        if self._stale:
            await self._push_all(gateways, json.dumps(state.full()).encode(), state.revision,
                                 only=set(self._stale))
        if stop.is_set():
            return
        page = await _until_stop(reader.changes(since=state.revision, wait=self.wait_s), stop)
        if page is None:
            return
        delta = state.apply([c for c in page["changes"] if c["revision"] > state.revision])
        state.revision = max(state.revision, int(page["next"]))
        if delta.reread_routes:
            state.set_routes(await reader.routes())
        if delta:
            await self._push_all(gateways, state.delta_body(delta), state.revision,
                                 only=set(self.targets) - self._stale)
        if time.monotonic() >= self._verify_at:
            self._verify_at = time.monotonic() + self.verify_s
            await self._verify(gateways, state)

    async def _verify(self, gateways: httpx.AsyncClient, state: RoutingState) -> None:
        """Read each gateway's table back; one at this state's revision that holds other peers
        is sent the full state next. One at another revision is not compared: ahead, it holds
        the monitor's newer pushes; behind, a delta is on its way."""
        for target in [t for t in self.targets if t not in self._stale]:
            try:
                table = (await gateways.get(f"{target}{PUSH_PATH}")).raise_for_status().json()
            except (httpx.HTTPError, ValueError) as e:
                log.debug("reading %s's table failed: %r", target, e)
                continue
            if not isinstance(table, dict) or table.get("revision") != state.revision:
                continue
            if differ := state.differences(table.get("upstreams") or {}):
                self.repairs += 1
                self.mark_stale(target)
                log.warning("gateway %s holds other peers than the catalog at revision %s in %d upstreams "
                            "(%s): sending it the full state", target, state.revision, len(differ),
                            ", ".join(differ[:5]))

    async def _push_all(self, gateways: httpx.AsyncClient, body: bytes, revision: int, *,
                        only: set[str]) -> None:
        """``body``: the push's JSON, encoded once for every gateway."""
        targets = [t for t in self.targets if t in only]
        results = await asyncio.gather(*(self._push(gateways, t, body, revision) for t in targets))
        for target, ok in zip(targets, results, strict=True):
            if ok:
                self._stale.discard(target)
            else:
                self._stale.add(target)
        self.pushes += 1
        self.last_push_at = time.time()

    async def _push(self, gateways: httpx.AsyncClient, target: str, body: bytes, revision: int) -> bool:
        try:
            response = await gateways.post(f"{target}{PUSH_PATH}", content=body, headers=JSON)
        except httpx.HTTPError as e:
            log.warning("push to %s failed: %r (full state next time)", target, e)
            return False
        if response.status_code == 200:
            return True
        log.warning("gateway %s refused a push (revision %s): %s %s", target, revision,
                    response.status_code, response.text[:300])
        return False


async def _until_stop(coro: Any, stop: asyncio.Event) -> Any:
    """Await ``coro`` unless ``stop`` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    return None


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
