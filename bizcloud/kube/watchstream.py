"""The watch stream's socket: one HTTP/1.1 GET over its own TLS connection, read as it arrives.

``KubeClient.stream_watch`` builds the request with httpx (the same URL, query string and
headers as every other call) and hands it here; an asyncio ``Protocol`` writes it and feeds
every block the TLS layer decrypts (up to 256 KiB) to the pure ``bizcloud.kube.http1``, which
parses the status line and headers, de-chunks the body and splits it into lines. A watch holds
its connection for minutes, so a connection of its own costs one handshake per watch, and
reading a 10,000-pod initial stream drops from one pass through httpx, httpcore, h11 and anyio
per event to a few string searches per event (0.40 s of CPU to 0.25 s, measured alone).

HTTP/1.1 only: TLS offers only ``http/1.1`` by ALPN, which the API server accepts. The
behaviour is httpx's as the rest of the client sees it: the kubeconfig's CA, client certificate
and bearer token; an answer outside 2xx raises the matching ``KubeApiError`` with its
``Status`` body; refused, reset or broken connections and malformed answers raise
``KubeUnavailable``; ``read_timeout`` bounds how long the server may stay silent (no byte
arriving), so a half-open connection ends the watch; a consumer that falls 4 MiB behind pauses
the reading (TCP pushes back on the server) and that pause is not silence; cancelling or
closing the iterator aborts the connection at once.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bizcloud.kube.config import KubeConfig
from bizcloud.kube.errors import KubeApiError, KubeUnavailable
from bizcloud.kube.http1 import MalformedResponse, ResponseLines

MAX_ERROR_BODY = 1024 * 1024    # a Status body is a few hundred bytes; refuse to buffer more
PAUSE_BYTES = 4 * 1024 * 1024  # unread bytes at which reading pauses until the consumer catches up
_HINT = "is the API server up? `bizcloud cluster status`"
_DROPPED_HEADERS = {b"accept-encoding", b"connection"}


class WatchStreamer:
    """Opens watch streams for one ``KubeConfig``; its TLS context is made once, on first use."""

    def __init__(self, config: KubeConfig, *, connect_timeout: float = 30.0) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        self._tls: ssl.SSLContext | None = None

    async def lines(self, request: httpx.Request, *, read_timeout: float | None,
                    what: str) -> AsyncIterator[bytes]:
        """The non-blank lines of the answer's body as they arrive, until the body ends.

        ``what`` names the request in error messages (``watch /api/v1/pods``).
        """
        url = request.url
        tls = self._tls_context() if url.scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(loop, read_timeout), url.host, url.port or (443 if tls else 80),
                ssl=tls, server_hostname=url.host if tls else None), self.connect_timeout)
        except TimeoutError as e:
            raise KubeUnavailable(f"{what}: no connection within {self.connect_timeout} s", hint=_HINT) from e
        except OSError as e:
            raise KubeUnavailable(f"{what}: cannot connect: {type(e).__name__}: {e}", hint=_HINT) from e
        try:
            transport.write(self._request_bytes(request))
            while batch := await connection.next_lines():
                for line in batch:
                    yield line
        finally:
            connection.close()
        response, error = connection.response, connection.error
        if isinstance(error, TimeoutError):
            raise KubeUnavailable(f"{what}: nothing read for {read_timeout} s (a dead connection?)",
                                  hint=_HINT) from error
        if isinstance(error, MalformedResponse):
            raise KubeUnavailable(f"{what}: {error}", hint=_HINT) from error
        if error is not None:
            raise KubeUnavailable(f"{what}: {type(error).__name__}: {error}", hint=_HINT) from error
        if response.head is not None and not response.ok:
            raise KubeApiError.from_status(response.head.status, _status_body(response.error_body))

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = self.config.ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._tls = context
        return self._tls

    def _request_bytes(self, request: httpx.Request) -> bytes:
        """The request head: httpx's headers but identity encoding, plus the bearer token if any."""
        lines = [b"GET " + request.url.raw_path + b" HTTP/1.1"]
        lines += [name + b": " + value for name, value in request.headers.raw
                  if name.lower() not in _DROPPED_HEADERS]
        lines.append(b"Accept-Encoding: identity")
        if token := self.config.bearer_token():
            lines.append(b"Authorization: Bearer " + token.encode("latin-1"))
        return b"\r\n".join(lines) + b"\r\n\r\n"


class _Connection(asyncio.Protocol):
    """Feeds what arrives to ``ResponseLines`` and keeps the lines until the consumer takes them.

    One watchdog timer (not one per read) ends the connection after ``read_timeout`` seconds
    without a byte; while the consumer lags and reading is paused, silence is not counted.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self.response = ResponseLines(max_error_body=MAX_ERROR_BODY)
        self.error: BaseException | None = None
        self._loop = loop
        self._read_timeout = read_timeout
        self._lines: list[bytes] = []
        self._unread = 0
        self._ended = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._last_read = loop.time()
        self._watchdog = loop.call_later(read_timeout, self._check_silence) if read_timeout else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        try:
            self._lines += self.response.feed(data)
        except MalformedResponse as e:
            self._end(e)
            return
        if self.response.done:
            self._end(None)
            return
        self._unread += len(data)
        if self._unread > PAUSE_BYTES and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        try:
            self._lines += self.response.finish()
        except MalformedResponse as e:
            self._end(e)
        else:
            self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionResetError("the connection closed"))

    async def next_lines(self) -> list[bytes]:
        """The lines received since the last call, waiting for some; empty once the response ended."""
        while not self._lines and not self._ended:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        lines, self._lines, self._unread = self._lines, [], 0
        if self._paused and self._transport is not None and not self._ended:
            self._paused = False
            self._last_read = self._loop.time()
            self._transport.resume_reading()
        return lines

    def close(self) -> None:
        """Abort the connection at once (a watch is never reused), and stop the watchdog."""
        self._ended = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._transport is not None:
            self._transport.abort()

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.error = error
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _check_silence(self) -> None:
        assert self._read_timeout is not None
        if self._ended:
            return
        now = self._loop.time()
        if self._paused:
            self._last_read = now           # the consumer is behind: the server is not silent
        if (due := self._last_read + self._read_timeout) > now:
            self._watchdog = self._loop.call_at(due, self._check_silence)
            return
        self._end(TimeoutError(f"nothing read for {self._read_timeout} s"))
        if self._transport is not None:
            self._transport.abort()


def _status_body(content: bytes) -> Any:
    """A ``Status`` object if the body is JSON, else its start as the message (as httpx's path does)."""
    try:
        return json.loads(content)
    except ValueError:
        return {"message": content[:200].decode("utf-8", "replace")}


__all__ = ["WatchStreamer"]
