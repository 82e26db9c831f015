"""The reflector: the monitor's one view of the cluster's pods, as a full list then a watch.

First stage of the data flow (cluster -> monitor -> subscribers): it lists the pods labelled
``bizcloud.io/service`` in all namespaces and hands the complete state to ``on_sync``, then
watches from that list's resourceVersion and hands each change to ``on_event``. The consumer
(the monitor's pure diff) compares each sync with what it knew, so a relist after a gap repairs
whatever the gap hid — a pod deleted while we were not watching shows up as missing from the
sync, never as a lost DELETED event.

Semantics follow client-go's reflector: bookmarks only move the resourceVersion forward; a
watch that ends (server timeout, randomised in [min, 2·min) so many clients do not reconnect in
step) is resumed from the last resourceVersion; 410 Gone — over HTTP, or as an ``ERROR`` event
inside a 200 stream, which is how the API server's watch cache says "too old" — means relist;
any other failure backs off exponentially with jitter (0.8 s doubling to 30 s, reset by a
healthy watch) and retries. The client's read timeout sits a little above the server's
``timeoutSeconds`` so a half-open connection is noticed instead of hanging forever.

Why httpx and not kubernetes_asyncio: the hot path wants raw JSON dicts without model decoding,
we want our own control of bookmarks, 410 and timeouts, and one HTTP stack for the whole project.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Protocol

from bizcloud.kube.client import KubeClient, Obj, Objs
from bizcloud.kube.errors import Gone, KubeApiError, KubeUnavailable

log = logging.getLogger(__name__)

SERVICE_LABEL = "bizcloud.io/service"
PODS = "/api/v1/pods"

_READ_TIMEOUT_SLACK = 15.0     # seconds above timeoutSeconds before a silent stream counts as dead
_SHORT_WATCH = 1.0             # a watch that ends this fast without events is a failure, not a timeout


class InformerHandler(Protocol):
    """What the reflector feeds. Exceptions are logged and answered with a relist."""

    async def on_sync(self, objects: Objs, resource_version: str) -> None:
        """The complete current state after every (re)list; the consumer diffs it."""

    async def on_event(self, type: str, obj: Obj) -> None:
        """One ADDED, MODIFIED or DELETED object, in resourceVersion order."""


class HandlerError(Exception):
    """The handler raised; carries its exception as the cause."""


class Backoff:
    """Exponential delays with jitter: initial, doubling up to ``cap``, until ``reset``."""

    def __init__(self, *, initial: float = 0.8, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.initial, self.cap = initial, cap
        self._rng = rng or random.Random()
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next * (1.0 + self._rng.random())  # jitter factor 1.0, as client-go's
        self._next = min(self._next * 2.0, self.cap)
        return min(delay, self.cap)

    def reset(self) -> None:
        self._next = self.initial


class Reflector:
    """List then watch one resource type across all namespaces; counters are plain attributes.

    ``run`` may be called again after it returned: it resumes the watch from
    ``last_resource_version`` (the handler still holds the state it was given), and relists if
    the server no longer has that much history.
    """

    def __init__(self, client: KubeClient, handler: InformerHandler, *, path: str = PODS,
                 label_selector: str | None = SERVICE_LABEL, min_watch_timeout: float = 300.0,
                 page_size: int = 500, backoff: Backoff | None = None,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.handler = handler
        self.path = path
        self.label_selector = label_selector
        self.min_watch_timeout = min_watch_timeout
        self.page_size = page_size
        self._rng = rng or random.Random()
        self._backoff = backoff or Backoff(rng=self._rng)
        self.relists = 0
        self.watch_restarts = 0
        self.events = 0
        self.bookmarks = 0
        self.expired = 0
        self.errors = 0
        self.last_resource_version = ""

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set. Only a bug (not a cluster or handler failure) ends it early."""
        worker = asyncio.create_task(self._loop(), name=f"reflector {self.path}")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (worker, stopper):
                task.cancel()
            await asyncio.gather(worker, stopper, return_exceptions=True)
        if worker.done() and not worker.cancelled() and (error := worker.exception()) is not None:
            raise error

    async def _loop(self) -> None:
        need_list = not self.last_resource_version
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
            except Gone as e:
                self.expired += 1
                self._log(logging.INFO, "resourceVersion expired, relisting", error=e.api_message)
                if not need_list:             # the watch's RV is too old: a relist is the cure, at once
                    need_list = True
                    continue
                # the list itself expired (a continue token outlived its snapshot): back off first
            except HandlerError as e:
                self.errors += 1
                log.error("informer handler failed, relisting path=%s rv=%s", self.path,
                          self.last_resource_version, exc_info=e.__cause__)
                need_list = True
            except (KubeApiError, KubeUnavailable) as e:
                self.errors += 1
                need_list = need_list or _resource_version_unusable(e)
                self._log(logging.WARNING, "list/watch failed", error=e.message, relist=need_list)
            await asyncio.sleep(self._backoff.next_delay())

    async def _list(self) -> None:
        items, resource_version = await self.client.list(self.path, label_selector=self.label_selector,
                                                         limit=self.page_size)
        self.relists += 1
        try:
            await self.handler.on_sync(items, resource_version)
        except Exception as e:
            raise HandlerError("on_sync failed") from e
        self.last_resource_version = resource_version
        self._log(logging.INFO, "listed", items=len(items))

    async def _watch(self) -> None:
        """One watch request, from the last resourceVersion until the server ends it."""
        timeout_seconds = int(self._rng.uniform(self.min_watch_timeout, 2 * self.min_watch_timeout))
        params: dict[str, str | int | bool] = {
            "resourceVersion": self.last_resource_version, "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        started, seen = time.monotonic(), 0
        async for event in self.client.stream_watch(self.path, params,
                                                    read_timeout=timeout_seconds + _READ_TIMEOUT_SLACK):
            seen += 1
            await self._apply(event)
        self.watch_restarts += 1
        if seen == 0 and time.monotonic() - started < _SHORT_WATCH:
            raise KubeUnavailable(f"watch {self.path} ended at once without events")
        self._backoff.reset()

    async def _apply(self, event: Obj) -> None:
        kind = event.get("type", "")
        obj: Obj = event.get("object") or {}
        resource_version = (obj.get("metadata") or {}).get("resourceVersion", "")
        if kind == "BOOKMARK":
            self.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            self.events += 1
            try:
                await self.handler.on_event(kind, obj)
            except Exception as e:
                raise HandlerError(f"on_event {kind} failed") from e
        else:
            self._log(logging.WARNING, "unknown watch event type ignored", type=kind)
            return
        if resource_version:
            self.last_resource_version = resource_version

    def _log(self, level: int, message: str, **fields: Any) -> None:
        pairs = " ".join(f"{k}={v!r}" for k, v in
                         {"path": self.path, "rv": self.last_resource_version, **fields}.items())
        log.log(level, "informer %s %s", message, pairs)


def _resource_version_unusable(error: Exception) -> bool:
    """Whether the watch must start over from a list rather than from the last resourceVersion.

    Purely computational. Besides 410 (handled before), the server refuses a resourceVersion it
    cannot parse (400) or one from its future, e.g. after etcd was restored ("Too large resource
    version", 504 with reason Timeout) — client-go relists on both.
    """
    if not isinstance(error, KubeApiError):
        return False
    return error.status == 400 or "too large resource version" in error.api_message.lower()


__all__ = ["PODS", "SERVICE_LABEL", "Backoff", "InformerHandler", "Reflector"]
