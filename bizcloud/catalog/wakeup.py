"""The change stream's wake-up: the monitor tells the API server "the catalog moved" by datagram.

The monitor commits instance changes from its own process (often its own host), and the server
answers long-polls of ``/changes`` — the gateway's syncer is one. Without a word from the monitor
the server only finds a commit at its next look at the database (``feed.RevisionWatch``, every
``catalog_poll_s``). So after each commit the monitor sends one UDP datagram,
``bizcloud-catalog <revision>``, to every server it was told about (by default the server's own
host and port: UDP beside its TCP), and the server reads the database at once.

Why a datagram and not an HTTP call: a ``sendto`` on a non-blocking socket costs microseconds,
needs no connection, no retry and no credentials, and can neither block nor fail a commit; a lost
or refused datagram (server down, another host, a firewall) costs only the poll interval, which
stays as the fallback. The datagram is a hint, never data: the server trusts the database, not
the revision in it, so a stray or forged one costs one cheap read and cannot wake anyone early.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence

from prometheus_client import Counter

from bizcloud.errors import BizCloudError

log = logging.getLogger(__name__)

PREFIX = b"bizcloud-catalog "
MAX_DATAGRAM = 64
OFF = "off"
WARN_EVERY_S = 60.0

SENT = Counter("bizcloud_catalog_wakeups_sent_total", "Wake-up datagrams sent to API servers, by outcome",
               ["outcome"])
RECEIVED = Counter("bizcloud_catalog_wakeups_received_total",
                   "Wake-up datagrams an API server received, by outcome", ["outcome"])

Address = tuple[str, int]


def parse_targets(spec: str | None, *, default: Address, setting: str = "catalog_wakeup") -> list[Address]:
    """``host:port[,host:port…]`` (``[v6]:port`` too); None or "" means ``default``, "off" none.
    ``setting`` names the setting in the error (``catalog_wakeup``, ``gateway_feed``).

    Purely computational; raises ``BizCloudError`` naming the bad entry.
    """
    if spec is None or not spec.strip():
        return [default]
    if spec.strip().lower() == OFF:
        return []
    targets: list[Address] = []
    for raw in spec.split(","):
        entry = raw.strip()
        host, sep, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BizCloudError(f"{setting}: {entry!r} is not host:port",
                                hint=f"set BIZCLOUD_{setting.upper()} to host:port[,host:port…] "
                                     "(where it should send), or 'off'")
        targets.append((host, int(port)))
    return targets


def encode(revision: int) -> bytes:
    """The datagram for ``revision``. Purely computational."""
    return PREFIX + str(revision).encode()


def decode(datagram: bytes) -> int | None:
    """The revision a datagram names, or None when it is not ours. Purely computational."""
    if len(datagram) > MAX_DATAGRAM or not datagram.startswith(PREFIX):
        return None
    digits = datagram[len(PREFIX):]
    return int(digits) if digits.isdigit() else None


class WakeupSender:
    """Fire-and-forget datagrams to the API servers; ``notify`` never blocks and never raises."""

    def __init__(self, targets: Sequence[Address]) -> None:
        self._addresses: list[tuple[int, Address]] = []   # (family, sockaddr) resolved once
        for host, port in targets:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as e:
                log.warning("catalog wake-ups: cannot resolve %s:%s (%s); it will poll", host, port, e)
                continue
            family, _, _, _, sockaddr = infos[0]
            self._addresses.append((family, (str(sockaddr[0]), int(sockaddr[1]))))
        self._sockets: dict[int, socket.socket] = {}
        for kind in {f for f, _ in self._addresses}:
            sock = socket.socket(kind, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sockets[kind] = sock
        self._warned_at = -WARN_EVERY_S

    @property
    def targets(self) -> list[Address]:
        return [address for _, address in self._addresses]

    def notify(self, revision: int) -> None:
        """Tell every server the catalog is at ``revision`` (at most once each; losses are fine)."""
        self.send(encode(revision))

    def send(self, datagram: bytes) -> None:
        """Send ``datagram`` to every target, once; never blocks, never raises."""
        for family, address in self._addresses:
            try:
                self._sockets[family].sendto(datagram, address)
            except OSError as e:  # full buffer, unreachable network, refused (ICMP): the poll covers it
                SENT.labels(outcome="failed").inc()
                now = time.monotonic()
                if now - self._warned_at >= WARN_EVERY_S:
                    self._warned_at = now
                    log.warning("catalog wake-up to %s:%s failed (%s); its server will poll", *address, e)
            else:
                SENT.labels(outcome="sent").inc()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._addresses.clear()


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_revision: Callable[[int], None]) -> None:
        self._on_revision = on_revision

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        revision = decode(data)
        if revision is None:
            RECEIVED.labels(outcome="ignored").inc()
            return
        RECEIVED.labels(outcome="accepted").inc()
        self._on_revision(revision)


async def listen(address: Address, on_revision: Callable[[int], None]) -> asyncio.DatagramTransport | None:
    """Receive wake-ups on UDP ``address`` and call ``on_revision``; None (logged) when the address
    cannot be bound — the server then finds commits by polling alone."""
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(on_revision),
                                                           local_addr=address)
    except OSError as e:
        log.warning("catalog wake-ups: cannot listen on udp %s:%s (%s); polling the database only",
                    *address, e)
        return None
    log.info("catalog wake-ups: listening on udp %s:%s", *address)
    return transport
