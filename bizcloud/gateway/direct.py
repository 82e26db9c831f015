"""The monitor's side of the gateway feed: each commit's peers, straight into every gateway's nginx.

The change stream (``/changes`` on the API server, followed by each gateway's syncer) is how the
gateways learn everything, and it stays the authority. On the Ready -> routable path, though, it
costs two process hops after the commit: the server answering the syncer's long poll, the
syncer pushing to nginx. So the monitor also pushes each commit itself: the store's
``on_commit`` hook (``CatalogStore(on_commit=...)``) hands over what was just committed, in
revision order, and this writes one per-peer delta (``upstreams.commit_body``) as an HTTP request
on a kept-alive connection to each gateway's admin port (``BIZCLOUD_GATEWAY_FEED``; by default
the local gateway's). Requests are pipelined, never waited for: the commit goes on at once, and
the answers are read as they come, only to be counted and logged.

Why this is safe beside the syncer: a delta names the revision it continues (``base``), and
nginx applies it only over a state at least that new (``state.lua``). A push that would skip a
revision — one lost while nginx restarted, a route changed by the API server, a commit of more
than ``max_changes`` left to the stream — is refused (409) and changes nothing; the syncer's
deltas, which re-apply idempotently over what was pushed, bring it a moment later. Nothing here
ever blocks or fails a commit: a gateway that is down costs a reconnection attempt at most once
a second, and its pushes are dropped meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Sequence

from prometheus_client import Counter

from bizcloud.catalog.store import ChangeOut, Committed
from bizcloud.catalog.wakeup import Address
from bizcloud.gateway.syncer import PUSH_PATH
from bizcloud.gateway.upstreams import commit_body
from bizcloud.kube.http1 import MalformedResponse, parse_head

log = logging.getLogger(__name__)

MAX_PUSH = 500            # changes pushed per commit; a bigger one (a relist's backlog) is the stream's
MAX_WAITING = 1000        # requests kept while a connection is being made; beyond, the stream's
RECONNECT_S = 1.0         # the least time between two connection attempts to one gateway
CONNECT_TIMEOUT_S = 1.0

OUTCOMES = ("applied", "refused", "failed", "dropped", "skipped")
PUSHES = Counter(
    "bizcloud_gateway_feed_pushes_total",
    "The monitor's pushes to each gateway by outcome: applied; refused (409, a revision gap: the "
    "change stream brings it); failed (any other answer); dropped (the gateway unreachable, or "
    "the connection lost twice); skipped (a commit too big to push: the stream's).",
    ["gateway", "outcome"])


def request_bytes(host: str, port: int, body: bytes) -> bytes:
    """The HTTP/1.1 request pushing ``body`` to a gateway's admin port. Purely computational."""
    return (f"POST {PUSH_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Answers:
    """Reads pipelined answers (each with a Content-Length) as they arrive. Purely computational."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The complete answers in ``data`` so far, as (status, body); raises ``MalformedResponse``."""
        self._buffer += data
        answers = []
        while (head := parse_head(self._buffer)) is not None:
            response, start = head
            length = response.headers.get("content-length", "")
            if not length.isdigit():
                raise MalformedResponse(f"an answer without a Content-Length ({response.status})")
            end = start + int(length)
            if len(self._buffer) < end:
                break
            answers.append((response.status, self._buffer[start:end]))
            self._buffer = self._buffer[end:]
        return answers


class _Connection(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self._link = link
        self._answers = Answers()

    def data_received(self, data: bytes) -> None:
        try:
            answers = self._answers.feed(data)
        except MalformedResponse as e:
            log.warning("gateway %s:%s answered a push with %s; reconnecting", *self._link.address, e)
            self._link.drop()
            return
        for status, body in answers:
            self._link.answered(status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link.lost(self)


class _Link:
    """One gateway: a kept-alive connection, made again when lost (at most once per ``RECONNECT_S``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: Address) -> None:
        self.loop, self.address = loop, address
        self.transport: asyncio.Transport | None = None
        self.protocol: _Connection | None = None
        self.waiting: collections.deque[bytes] = collections.deque()
        self.in_flight: collections.deque[bytes] = collections.deque()   # written, not answered yet
        self.connecting: asyncio.Task[None] | None = None
        self.next_attempt = 0.0
        self.outcomes: collections.Counter[str] = collections.Counter()
        gateway = f"{address[0]}:{address[1]}"
        self._exported = {outcome: PUSHES.labels(gateway, outcome) for outcome in OUTCOMES}
        self.failing = False    # the last connection attempt failed (logged once, until one works)
        self.resent = False     # unanswered pushes were sent again, and nothing answered since

    def send(self, request: bytes) -> None:
        """On the loop's thread."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(request)
            self.in_flight.append(request)
            return
        if self.connecting is None:
            if time.monotonic() < self.next_attempt:
                self.count("dropped")   # the gateway was unreachable a moment ago
                return
            self.next_attempt = time.monotonic() + RECONNECT_S
            self.connecting = self.loop.create_task(self._connect(), name=f"gateway-feed {self.address}")
        if len(self.waiting) >= MAX_WAITING:
            self.count("dropped")
            return
        self.waiting.append(request)

    async def _connect(self) -> None:
        host, port = self.address
        try:
            transport, protocol = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), host, port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            log.log(logging.DEBUG if self.failing else logging.WARNING,
                    "gateway feed: cannot connect to %s:%s (%r); its pushes wait for the change stream "
                    "(retried at most once a second, logged again when it works)", host, port, e)
            self.failing = True
            self.count("dropped", len(self.waiting))
            self.waiting.clear()
            return
        finally:
            self.connecting = None
        assert isinstance(transport, asyncio.Transport)
        if self.failing:
            log.info("gateway feed: connected to %s:%s again", host, port)
        self.failing = False
        self.transport, self.protocol = transport, protocol
        self.next_attempt = 0.0   # only a failed attempt holds the next one back
        while self.waiting:
            request = self.waiting.popleft()
            transport.write(request)
            self.in_flight.append(request)

    def answered(self, status: int, body: bytes) -> None:
        self.resent = False
        if self.in_flight:
            self.in_flight.popleft()
        if status == 200:
            self.count("applied")
        elif status == 409:   # a gap (or no state yet): the syncer brings it
            self.count("refused")
            log.debug("gateway %s:%s refused a push: %s", *self.address, body[:200])
        else:
            self.count("failed")
            log.warning("gateway %s:%s answered a push with %s: %s", *self.address, status, body[:300])

    def lost(self, protocol: _Connection) -> None:
        """The connection closed (nginx restarted, or closed it): what it did not answer is sent
        again on a new one at once — a delta applied twice changes nothing, and one older than
        the gateway's state is ignored."""
        if protocol is not self.protocol:
            return
        self.transport = self.protocol = None
        unanswered, self.in_flight = self.in_flight, collections.deque()
        if unanswered and self.resent:   # closed again before answering any: not sent a third time
            self.count("dropped", len(unanswered))
            self.resent = False
        elif unanswered and self.connecting is None:
            self.resent = True
            self.waiting.extendleft(reversed(unanswered))
            self.next_attempt = time.monotonic() + RECONNECT_S
            self.connecting = self.loop.create_task(self._connect(), name=f"gateway-feed {self.address}")

    def count(self, outcome: str, pushes: int = 1) -> None:
        """Here (``NginxPusher.outcomes``) and in the monitor's metrics."""
        if pushes:
            self.outcomes[outcome] += pushes
            self._exported[outcome].inc(pushes)

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.transport = self.protocol = None
        self.in_flight.clear()

    async def aclose(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        self.drop()


class NginxPusher:
    """The catalog store's ``on_commit`` hook in the monitor: pushes each commit to every gateway.

    Made on the event loop that then does the sending; called on whichever thread committed (the
    loop's own for small batches, the store's commit thread otherwise), always in revision order
    and under the store's write lock. What it hands over is queued in that order and written by
    the loop: at once when the commit ran on the loop, else as soon as the loop is next free.
    """

    def __init__(self, targets: Sequence[Address], *, max_changes: int = MAX_PUSH) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._links = [_Link(self._loop, address) for address in targets]
        self._max_changes = max_changes
        self._queue: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()

    @property
    def targets(self) -> list[Address]:
        return [link.address for link in self._links]

    def outcomes(self) -> collections.Counter[str]:
        """Pushes by outcome, over every gateway (``OUTCOMES``; ``PUSHES`` has them per gateway)."""
        total: collections.Counter[str] = collections.Counter()
        for link in self._links:
            total.update(link.outcomes)
        return total

    def __call__(self, committed: Committed) -> None:
        if not self._links:
            return
        if len(committed.revisions) > self._max_changes:   # left to the stream
            for link in self._links:
                link.count("skipped")
            return
        try:
            body = commit_body([_change(c) for c in committed.changes()])
        except Exception:  # the gateways follow the stream meanwhile; never fail the commit
            log.exception("encoding a commit for the gateways failed")
            return
        if body is None:
            return
        with self._lock:
            self._queue.append(body)
        if threading.get_ident() == self._thread:
            self._flush()
        else:
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            bodies = list(self._queue)
            self._queue.clear()
        for link in self._links:
            host, port = link.address
            for body in bodies:
                link.send(request_bytes(host, port, body))

    async def aclose(self) -> None:
        for link in self._links:
            await link.aclose()


def _change(change: ChangeOut) -> dict[str, object]:
    """A committed change in the change stream's shape, as ``commit_body`` reads it."""
    return {"revision": change.revision, "type": change.type.value, "uid": str(change.uid),
            "service": change.service, "env": change.env, "instance": change.instance}
