"""The bridge: a client's WebSocket (browser terminal or ``bizcloud shell``) <-> one shell session.

The wire protocol to the client, binary frames both ways, close to Kubernetes' own channels:

- client -> BizCloud: ``0x00`` + bytes typed (stdin); ``0x04`` + ``{"cols": C, "rows": R}`` (resize).
- BizCloud -> client: the terminal's output bytes, as they come. BizCloud's own messages (the pod
  is gone, the session ended) are written into that output as a highlighted line, so every
  terminal shows them without knowing about them.

Two pumps, each awaiting the other side before reading more, so a huge paste or a slow client
holds at most one message in memory: the server's WebSocket send waits while the client's socket
is full (uvicorn pauses writing past its transport's high-water mark), the exec stream's reader
stops, and the shell in the container blocks on its own output. A client that reads nothing for
``stall_s`` seconds is gone or stuck: the session is closed instead of holding the shell open
forever, and says why — a last line in the terminal (sent as ``last``: it may pass the
back-pressure, so it arrives if the client ever reads again), the close code and reason of
``ClientStalled``, and the audit trail's end. A keepalive task touches the backend when the
session is idle (the client side is kept alive by WebSocket pings from the server,
``ws_ping_interval``; a client that leaves one unanswered is ``ClientUnresponsive``, which the
peer's ``receive`` raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Protocol

from bizcloud.webshell.asciicast import Recorder
from bizcloud.webshell.backends import ShellSession
from bizcloud.webshell.errors import ClientStalled, ShellError

STDIN, RESIZE = 0, 4
CLOSE_NORMAL = 1000
WRITE_CHUNK = 64 * 1024
MAX_COLS, MAX_ROWS = 1000, 500
NOTICE_TIMEOUT_S = 1.0  # a last message to a client that may not be reading: try, do not wait for it

log = logging.getLogger("bizcloud.webshell")


class Peer(Protocol):
    async def receive(self) -> bytes | None: ...   # None: the client went away
    async def send(self, data: bytes, *, last: bool = False) -> None: ...   # last: may pass back-pressure


@dataclass(frozen=True)
class Ending:
    """How a session ended: the reason (audit trail, last line) and the WebSocket close code."""

    reason: str
    close_code: int = CLOSE_NORMAL


def notice(text: str) -> bytes:
    """A line from BizCloud itself, in the terminal, on a line of its own. Purely computational."""
    return f"\r\n\x1b[1;33m[bizcloud] {text}\x1b[0m\r\n".encode()


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """``{"cols": C, "rows": R}`` within sane bounds, else None (ignored). Purely computational."""
    try:
        size = json.loads(payload)
        cols, rows = int(size["cols"]), int(size["rows"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (1 <= cols <= MAX_COLS and 1 <= rows <= MAX_ROWS):
        return None
    return cols, rows


def stall_limit(keepalive_s: float) -> float:
    """How long a client may read nothing before its session is closed: three keepalive intervals,
    at least 10 s (a browser tab busy for a moment is not gone). Purely computational."""
    return max(10.0, 3 * keepalive_s)


async def _tell(peer: Peer, text: str, recorder: Recorder | None) -> None:
    """BizCloud's last line to the client (and the recording), for whenever it reads again."""
    if recorder:
        recorder.output(notice(text))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(peer.send(notice(text), last=True), NOTICE_TIMEOUT_S)


async def bridge(peer: Peer, session: ShellSession, *, recorder: Recorder | None = None,
                 keepalive_s: float = 20.0, stall_s: float | None = None) -> Ending:
    """Pump bytes until either side ends; returns how the session ended (audit trail, close frame).

    ``stall_s`` (default ``stall_limit(keepalive_s)``): how long one send to the client may wait.
    """
    activity = asyncio.Event()
    ended = Ending("client disconnected")
    stall = stall_limit(keepalive_s) if stall_s is None else stall_s

    async def downstream() -> None:
        nonlocal ended
        while (data := await session.read()) is not None:
            activity.set()
            if recorder:
                recorder.output(data)
            try:
                await asyncio.wait_for(peer.send(data), stall)
            except TimeoutError:
                raise ClientStalled.not_reading(stall) from None
        ended = Ending(await session.ending())
        await _tell(peer, ended.reason, recorder)

    async def upstream() -> None:
        while (message := await peer.receive()) is not None:
            if not message:
                continue
            activity.set()
            channel, payload = message[0], message[1:]
            if channel == STDIN:
                if recorder:
                    recorder.input(payload)
                for start in range(0, len(payload), WRITE_CHUNK):
                    await session.write(payload[start:start + WRITE_CHUNK])
            elif channel == RESIZE and (size := parse_resize(payload)):
                if recorder:
                    recorder.resize(cols=size[0], rows=size[1])
                await session.resize(cols=size[0], rows=size[1])

    async def keepalive() -> None:
        while True:
            activity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(activity.wait(), keepalive_s)
                continue
            await session.keepalive()

    tasks = {asyncio.create_task(downstream(), name="shell-downstream"),
             asyncio.create_task(upstream(), name="shell-upstream"),
             asyncio.create_task(keepalive(), name="shell-keepalive")}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if isinstance(error, ShellError):
                code = error.close_code if isinstance(error, ClientStalled) else CLOSE_NORMAL
                ended = Ending(error.message, code)
                await _tell(peer, ended.reason, recorder)
            elif error is not None:
                log.warning("shell %s: %s: %s", session.target, type(error).__name__, error)
                ended = Ending(f"error: {error}", 1011)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await session.close()
        if recorder:
            recorder.close()
    return ended
