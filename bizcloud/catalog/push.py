"""Committed changes pushed straight from the monitor to the gateways' syncers, by datagram.

The change stream (``/changes`` on the API server) is how every reader follows the catalog, and
it stays the authority. But on the gateway's path it costs a hop per commit: the monitor's
wake-up datagram, the server's two reads, an HTTP answer, the syncer's parse — each a process or
thread that a loaded machine schedules late (at 1,000 churning pods on 2 cores, committed ->
answered was p50 25 / p99 199 ms). So after each commit the monitor also reads the rows it just
committed (and any other writer's in between: it reads by revision, so what it sends has no
holes) and sends them to every gateway it was told about (``BIZCLOUD_GATEWAY_FEED``; by default
the local gateway's admin port, UDP beside nginx's TCP): ``bizcloud-changes `` + JSON
``{"changes": [...]}``, in the change stream's own shape, split so each datagram stays small.

The syncer applies a datagram only when it continues its state exactly (the first revision is
the one after its own) and remembers what it applied; when the change stream then brings the
same revisions it checks them against what it applied and re-seeds from the catalog on any
difference. So a datagram lost, reordered, forged or from another catalog costs at most the
stream's usual delay, never a wrong table for longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bizcloud.catalog.store import ChangeOut
from bizcloud.catalog.wakeup import Address, WakeupSender

log = logging.getLogger(__name__)

PREFIX = b"bizcloud-changes "
MAX_DATAGRAM = 60_000   # below UDP's 65,507-byte limit; a bigger read goes out in several
MAX_READ = 2000         # changes read per look; a longer run (a relist's backlog) is left to the stream


def change_json(change: ChangeOut) -> dict[str, Any]:
    """One change as ``/changes`` shows it (``ChangePublic``). Purely computational."""
    return {"revision": change.revision, "type": str(change.type.value), "uid": str(change.uid),
            "service": change.service, "env": change.env,
            "group": None if change.group is None else str(change.group.value),
            "instance": change.instance, "at": change.at.isoformat()}


def encode(changes: Sequence[dict[str, Any]]) -> list[bytes]:
    """Datagrams carrying ``changes`` in order, each below ``MAX_DATAGRAM``; a single change too big
    for one ends the list (the receiver sees a hole and waits for the stream). Purely computational."""
    datagrams: list[bytes] = []
    parts: list[bytes] = []
    size = len(PREFIX) + len(b'{"changes":[]}')
    for change in changes:
        part = json.dumps(change, separators=(",", ":")).encode()
        if size + len(part) + 1 > MAX_DATAGRAM:
            if not parts:
                break
            datagrams.append(PREFIX + b'{"changes":[' + b",".join(parts) + b"]}")
            parts, size = [], len(PREFIX) + len(b'{"changes":[]}')
            if size + len(part) + 1 > MAX_DATAGRAM:
                break
        parts.append(part)
        size += len(part) + 1
    if parts:
        datagrams.append(PREFIX + b'{"changes":[' + b",".join(parts) + b"]}")
    return datagrams


def decode(datagram: bytes) -> list[dict[str, Any]] | None:
    """The changes a datagram carries, in revision order, or None when it is not a well-formed one of
    ours (ignored: the stream brings the truth). Purely computational."""
    if not datagram.startswith(PREFIX):
        return None
    try:
        body = json.loads(datagram[len(PREFIX):])
    except ValueError:
        return None
    changes = body.get("changes") if isinstance(body, dict) else None
    if not isinstance(changes, list) or not changes:
        return None
    for change in changes:
        if not (isinstance(change, dict) and isinstance(change.get("revision"), int)
                and isinstance(change.get("type"), str) and isinstance(change.get("instance"), dict)):
            return None
    revisions = [c["revision"] for c in changes]
    if revisions != list(range(revisions[0], revisions[0] + len(revisions))):
        return None
    return changes


class ChangePusher:
    """The monitor's side: ``committed(revision)`` after each commit (the catalog subscriber's
    ``on_commit``); one task reads what was committed since the last send and sends it. Never
    blocks a commit and never raises into one."""

    def __init__(self, read: Callable[[int, int], list[ChangeOut]], targets: Sequence[Address]) -> None:
        self._read = read          # (since, limit) -> changes after since: CatalogStore.changes_since
        self._sender = WakeupSender(targets)
        self._sent: int | None = None
        self._wanted = 0
        self._task: asyncio.Task[None] | None = None
        # Its reads on a thread of its own: in the loop's shared pool they waited behind journal
        # writes and grants, and this read is on every commit's way to the gateways.
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-feed")

    @property
    def targets(self) -> list[Address]:
        return self._sender.targets

    def committed(self, revision: int) -> None:
        if not self._sender.targets:
            return
        self._wanted = max(self._wanted, revision)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send(), name="gateway-feed")

    async def _send(self) -> None:
        try:
            while self._sent is None or self._wanted > self._sent:
                wanted = self._wanted
                if self._sent is None or wanted - self._sent > MAX_READ:
                    # first commit, or too far behind: from just before this commit (older ones are
                    # the stream's; the syncer waits for it when it sees the hole)
                    self._sent = max(0, wanted - 1) if self._sent is None else wanted - MAX_READ
                since = self._sent
                rows = await asyncio.get_running_loop().run_in_executor(self._reads, self._read, since,
                                                                         wanted - since)
                changes = [change_json(c) for c in rows if c.revision <= wanted]
                for datagram in encode(changes):
                    self._sender.send(datagram)
                self._sent = wanted
        except Exception:  # the catalog may be away: the gateways follow the stream meanwhile
            log.exception("pushing committed changes to the gateways failed")
            self._sent = None

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sender.close()
        self._reads.shutdown(wait=False)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_changes: Callable[[list[dict[str, Any]]], None]) -> None:
        self._on_changes = on_changes

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        changes = decode(data)
        if changes is not None:
            self._on_changes(changes)


async def listen(address: Address, on_changes: Callable[[list[dict[str, Any]]], None]
                 ) -> asyncio.DatagramTransport | None:
    """Receive pushed changes on UDP ``address``; None (logged) when it cannot be bound — the
    gateway then follows the change stream alone."""
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(on_changes), local_addr=address)
    except OSError as e:
        log.warning("gateway feed: cannot listen on udp %s:%s (%s); following the change stream only",
                    *address, e)
        return None
    log.info("gateway feed: listening on udp %s:%s", *address)
    return transport
