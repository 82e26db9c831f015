"""The watch stream's socket: one HTTP/1.1 GET over its own TLS connection, read in big blocks.

``KubeClient.stream_watch`` builds the request with httpx (the same URL, query string and
headers as every other call) and hands it here; this module opens a connection with asyncio,
writes the request, and reads the answer up to 256 KiB at a time, leaving the status line,
headers, de-chunking and line splitting to the pure ``bizcloud.kube.http1``. A watch holds its
connection for minutes, so a connection of its own costs one handshake per watch, and the
reading of a 10,000-pod initial stream drops from one pass through httpx, httpcore, h11 and
anyio per event to a few string searches per event.

HTTP/1.1 only: TLS offers only ``http/1.1`` by ALPN, which the API server accepts. The
behaviour is httpx's as the rest of the client sees it: the kubeconfig's CA, client certificate
and bearer token; an answer outside 2xx raises the matching ``KubeApiError`` with its
``Status`` body; refused, reset or broken connections and malformed answers raise
``KubeUnavailable``; ``read_timeout`` bounds the silence between two reads, so a half-open
connection ends the watch; cancelling or closing the iterator aborts the connection at once.
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
from bizcloud.kube.http1 import BodyDecoder, LineSplitter, MalformedResponse, parse_head

BLOCK_BYTES = 256 * 1024        # one read; the TLS layer hands over up to this much at once
MAX_ERROR_BODY = 1024 * 1024    # a Status body is a few hundred bytes; refuse to buffer more
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
        port = url.port or (443 if tls else 80)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(url.host, port, ssl=tls, server_hostname=url.host if tls else None,
                                        limit=BLOCK_BYTES), self.connect_timeout)
        except TimeoutError as e:
            raise KubeUnavailable(f"{what}: no connection within {self.connect_timeout} s", hint=_HINT) from e
        except OSError as e:
            raise KubeUnavailable(f"{what}: cannot connect: {type(e).__name__}: {e}", hint=_HINT) from e
        try:
            writer.write(self._request_bytes(request))
            buffer = b""
            while (parsed := parse_head(buffer)) is None:
                data = await _read(reader, read_timeout)
                if not data:
                    raise MalformedResponse("the connection closed before the response head")
                buffer += data
            head, start = parsed
            body = BodyDecoder(head)
            if not 200 <= head.status < 300:
                raise KubeApiError.from_status(head.status, _status_body(await _read_all(
                    reader, body, buffer[start:], read_timeout)))
            splitter = LineSplitter()
            data = buffer[start:]
            while True:
                for line in splitter.feed(body.feed(data)):
                    yield line
                if body.done:
                    break
                data = await _read(reader, read_timeout)
                if not data:
                    body.finish()
                    break
            for line in splitter.finish():
                yield line
        except TimeoutError as e:
            raise KubeUnavailable(f"{what}: nothing read for {read_timeout} s (a dead connection?)",
                                  hint=_HINT) from e
        except MalformedResponse as e:
            raise KubeUnavailable(f"{what}: {e}", hint=_HINT) from e
        except OSError as e:
            raise KubeUnavailable(f"{what}: {type(e).__name__}: {e}", hint=_HINT) from e
        finally:
            writer.transport.abort()

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


async def _read(reader: asyncio.StreamReader, timeout: float | None) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read(BLOCK_BYTES)


async def _read_all(reader: asyncio.StreamReader, body: BodyDecoder, data: bytes,
                    timeout: float | None) -> bytes:
    """A whole (error) body, bounded by ``MAX_ERROR_BODY``."""
    pieces = body.feed(data)
    size = sum(map(len, pieces))
    while not body.done and size <= MAX_ERROR_BODY:
        data = await _read(reader, timeout)
        if not data:
            body.finish()
            break
        more = body.feed(data)
        pieces += more
        size += sum(map(len, more))
    return b"".join(pieces)[:MAX_ERROR_BODY]


def _status_body(content: bytes) -> Any:
    """A ``Status`` object if the body is JSON, else its start as the message (as httpx's path does)."""
    try:
        return json.loads(content)
    except ValueError:
        return {"message": content[:200].decode("utf-8", "replace")}


__all__ = ["WatchStreamer"]
