"""The feed from the catalog to the gateways: seed, then follow the change stream and push.

One ``Syncer`` reads the catalog over its REST API (reads only: ``/instances``, ``/routes``,
``/gray``, ``/changes``), keeps a ``RoutingState`` and pushes to every gateway's admin endpoint:
the full state first and whenever a gateway lost track (it answered 409, failed, or restarted),
then one delta per page of changes. A 410 from the change stream (the catalog's database was
replaced) re-seeds. Pushes to several gateways go out concurrently; a gateway that does not
answer is retried with the full state on the next round and never holds the others up.

The monitor also pushes what it commits straight to the syncer (``catalog/push.py``): ``offer``
takes such a datagram, and when it continues the syncer's state exactly (its first revision is the
next one) it is applied and pushed at once, without waiting for the server's answer. Applied
changes are remembered until the change stream brings the same revisions, which must agree;
on any difference the syncer re-seeds from the catalog. A datagram with a hole before it (lost,
late, or a change the monitor did not make) is left to the stream, which is never skipped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from bizcloud.gateway.errors import GatewayError
from bizcloud.gateway.upstreams import RoutingState

log = logging.getLogger(__name__)

PUSH_PATH = "/bizcloud/upstreams"
JSON = {"Content-Type": "application/json"}
MAX_UNCONFIRMED = 10_000   # pushed changes the stream has not confirmed yet: beyond this, wait for it


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

    def __init__(self, *, catalog_url: str, targets: Sequence[str], wait_s: float = 30.0) -> None:
        self.catalog_url = catalog_url
        self.targets = list(targets)
        self.wait_s = wait_s
        self.state: RoutingState | None = None
        self._stale: set[str] = set(self.targets)   # targets that need the full state
        self.pushes = 0
        self.last_push_at: float | None = None
        self._lock = asyncio.Lock()   # one state change and its push at a time, in revision order
        self._offered: collections.deque[list[dict[str, Any]]] = collections.deque(maxlen=1000)
        self._offer_ready = asyncio.Event()
        self._unconfirmed: dict[int, str] = {}   # revision -> essence of a pushed change, until streamed
        self.taken = 0       # pushed changes applied ahead of the stream
        self.reseeds = 0     # times the stream disagreed with a pushed change

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

    def offer(self, changes: list[dict[str, Any]]) -> None:
        """Changes the monitor pushed (``catalog/push.py``), in revision order; applied if they continue
        the state, else left to the stream. Never blocks (the datagram receiver calls it)."""
        self._offered.append(changes)
        self._offer_ready.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the catalog until ``stop``; errors are logged and retried with a short back-off."""
        async with httpx.AsyncClient(base_url=self.catalog_url, timeout=self.wait_s + 10) as catalog, \
                httpx.AsyncClient(timeout=10) as gateways:
            reader = CatalogReader(catalog)
            backoff = 0.2
            pushed = asyncio.create_task(self._follow_offers(gateways, stop), name="gateway-feed")
            try:
                while not stop.is_set():
                    try:
                        await self._round(reader, gateways, stop)
                        backoff = 0.2
                    except StreamReset as e:
                        log.warning("change stream reset (%s): re-seeding from the catalog", e)
                        self._forget()
                    except GatewayError as e:
                        log.warning("syncer: %s", e.one_line())
                        await sleep_or_stop(stop, backoff)
                        backoff = min(backoff * 2, 5.0)
            finally:
                pushed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pushed

    def _forget(self) -> None:
        """Lose the state: the next round re-seeds from the catalog and sends every gateway all of it."""
        self.state = None
        self._unconfirmed.clear()

    async def _follow_offers(self, gateways: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._offer_ready.wait()
            self._offer_ready.clear()
            while self._offered:
                await self._take(self._offered.popleft(), gateways)

    async def _take(self, offered: list[dict[str, Any]], gateways: httpx.AsyncClient) -> None:
        """Apply and push pushed changes that continue the state exactly (see the module docstring)."""
        async with self._lock:
            state = self.state
            if state is None or len(self._unconfirmed) >= MAX_UNCONFIRMED:
                return
            changes = [c for c in offered if c["revision"] > state.revision]
            if not changes or changes[0]["revision"] != state.revision + 1 \
                    or any(c["type"] == "ROUTE" for c in changes):   # a hole, or routes to re-read
                return
            try:
                delta = state.apply(changes)
            except (KeyError, TypeError, ValueError) as e:   # not the stream's shape: it will tell
                log.warning("a pushed change was not understood (%r): re-seeding from the catalog", e)
                self._forget()
                return
            for change in changes:
                self._unconfirmed[change["revision"]] = _essence(change)
            self.taken += len(changes)
            live = set(self.targets) - self._stale
            if delta and live:
                await self._push_all(gateways, state.delta_body(delta), state.revision, only=live)

    async def _round(self, reader: CatalogReader, gateways: httpx.AsyncClient, stop: asyncio.Event) -> None:
        if self.state is None:
            self.state = await reader.seed()
            self._stale = set(self.targets)
            log.info("seeded from the catalog revision=%s upstreams=%s routes=%s", self.state.revision,
                     len(self.state.upstreams), len(self.state.routes))
        state = self.state
        if self._stale:
            async with self._lock:   # no pushed delta between this full state and its target's return
                await self._push_all(gateways, json.dumps(state.full()).encode(), state.revision,
                                     only=set(self._stale))
        if stop.is_set():
            return
        page = await _until_stop(reader.changes(since=state.revision, wait=self.wait_s), stop)
        if page is None:
            return
        async with self._lock:
            if self.state is not state:
                return
            fresh = self._confirm(page["changes"], state.revision)
            if fresh is None:
                self.reseeds += 1
                log.warning("the change stream disagrees with a pushed change: re-seeding from the catalog")
                self._forget()
                return
            delta = state.apply(fresh)
            state.revision = max(state.revision, int(page["next"]))
            if delta.reread_routes:
                state.set_routes(await reader.routes())
            if delta:
                await self._push_all(gateways, state.delta_body(delta), state.revision,
                                     only=set(self.targets) - self._stale)

    def _confirm(self, changes: list[dict[str, Any]], revision: int) -> list[dict[str, Any]] | None:
        """The page's changes beyond ``revision`` (the state's); the ones up to it were pushed and
        applied ahead of the stream and must be what was applied: None when one is not."""
        fresh = []
        for change in changes:
            if change["revision"] > revision:
                fresh.append(change)
            elif self._unconfirmed.pop(change["revision"], None) != _essence(change):
                return None
        return fresh

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


def _essence(change: Mapping[str, Any]) -> str:
    """What a change must agree on with the stream's copy of it. Purely computational."""
    return json.dumps([change.get(k) for k in ("revision", "type", "uid", "service", "env", "group",
                                                "instance")], sort_keys=True, default=str)


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
