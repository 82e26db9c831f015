"""Follow one object as it changes: a list+watch narrowed to one name, for the waits of apply.

Waiting for a rollout, a pod resize or a namespace deletion means looking at one object until
it says "done". A watch (not a poll) does that with one request and reacts within milliseconds:
list the collection with ``fieldSelector=metadata.name=NAME`` (one consistent read and its
resourceVersion), then watch from that resourceVersion. A watch the server ends (its
``timeoutSeconds``) is resumed from the last resourceVersion seen (bookmarks included); 410 Gone
lists again, and so does a watch the API server dropped (``KubeUnavailable``: a restart, a reset
connection) after a pause. The caller bounds the whole wait with ``asyncio.timeout``, so a
server that stays away ends the wait as a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from bizcloud.kube.client import KubeClient, Obj
from bizcloud.kube.errors import Gone, KubeUnavailable

WATCH_SECONDS = 60           # the server ends each watch after this long; we resume
_READ_SLACK = 15.0           # silence above WATCH_SECONDS that means the connection is dead
RETRY_SECONDS = 1.0          # pause before listing again after the API server could not be reached


async def follow(client: KubeClient, collection: str, name: str) -> AsyncGenerator[Obj | None, None]:
    """The object now, then each new version of it; ``None`` (once, then the end) when it is gone.

    ``collection`` is the REST path of the object's collection (``.../deployments``).
    """
    selector: dict[str, str | int | bool] = {"fieldSelector": f"metadata.name={name}"}
    while True:
        try:
            items, version = await client.list(collection, params=selector)
            if not items:
                yield None
                return
            yield items[0]
            while True:
                params: dict[str, str | int | bool] = {
                    **selector, "resourceVersion": version, "allowWatchBookmarks": "true",
                    "timeoutSeconds": WATCH_SECONDS}
                async for event in client.stream_watch(collection, params,
                                                       read_timeout=WATCH_SECONDS + _READ_SLACK):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") == "DELETED":
                        yield None
                        return
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        yield obj
        except Gone:
            continue    # our resourceVersion expired: list again
        except KubeUnavailable:
            await asyncio.sleep(RETRY_SECONDS)    # an API server restart or a dropped connection


__all__ = ["follow"]
