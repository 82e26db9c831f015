"""The watch reader's socket side against a local HTTP server that misbehaves on purpose.

The API server tests (``tests/e2e/test_watchstream.py``) show the reader works with the real
thing; an API server will not go quiet mid-chunk, stall after its head, or outrun a slow
consumer by 40 MB on request, so a small asyncio server on a real local socket does that here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from bizcloud.errors import KubeError
from bizcloud.kube.client import KubeClient
from bizcloud.kube.config import KubeConfig
from bizcloud.kube.errors import Gone, KubeApiError, KubeUnavailable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}".encode() + b"\r\n" + data + b"\r\n"


def event(n: int, padding: int = 0) -> bytes:
    return json.dumps({"type": "ADDED", "object": {"metadata": {"name": f"p{n}"}, "pad": "x" * padding}}
                      ).encode() + b"\n"


@contextlib.asynccontextmanager
async def serving(handler: Handler, *, token: str | None = None,
                  heads: list[bytes] | None = None) -> AsyncIterator[KubeClient]:
    """A client of a local plain-HTTP server that reads each request's head, then runs ``handler``."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            head = await reader.readuntil(b"\r\n\r\n")
            if heads is not None:
                heads.append(head)
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = KubeConfig(server=f"http://127.0.0.1:{port}", token=token)
        async with KubeClient.from_config(config) as client:
            yield client
    finally:
        server.close()


async def names(client: KubeClient, read_timeout: float | None = 5,
                into: list[str] | None = None) -> list[str]:
    seen = [] if into is None else into
    async for e in client.stream_watch("/api/v1/pods", {"labelSelector": "a"}, read_timeout=read_timeout):
        seen.append(e["object"]["metadata"]["name"])
    return seen


async def test_the_request_carries_the_query_headers_and_token() -> None:
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_CHUNKED + b"0\r\n\r\n")

    async with serving(answer, token="s3cret", heads=heads) as client:
        assert await names(client) == []
        port = client.http.base_url.port
    lines = heads[0].decode().split("\r\n")
    assert lines[0] == "GET /api/v1/pods?labelSelector=a&watch=true HTTP/1.1"
    assert {f"Host: 127.0.0.1:{port}", "Accept: application/json", "User-Agent: bizcloud",
            "Accept-Encoding: identity", "Authorization: Bearer s3cret"} <= set(lines)


async def test_a_slow_consumer_pauses_the_reading_and_misses_nothing() -> None:
    total, written = 4000, [0]

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_CHUNKED)
        for n in range(total):
            data = chunk(event(n, padding=10_000))
            writer.write(data)
            await writer.drain()
            written[0] += len(data)
        writer.write(b"0\r\n\r\n")

    async with serving(flood) as client:
        stream = client.stream_watch("/api/v1/pods", read_timeout=0.5)
        first = await anext(stream)
        await asyncio.sleep(1.0)         # longer than read_timeout: paused reading is not silence
        assert written[0] < 20_000_000, f"the server wrote {written[0]} bytes while nobody read"
        rest = [e async for e in stream]
    assert [e["object"]["metadata"]["name"] for e in [first, *rest]] == [f"p{n}" for n in range(total)]
    assert written[0] > 40_000_000


async def test_a_server_silent_after_its_head_ends_the_watch_within_the_read_timeout() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_CHUNKED + chunk(event(1)))
        await reader.read()               # silent until the client gives up

    async with serving(stall) as client:
        seen: list[str] = []
        started = time.monotonic()
        with pytest.raises(KubeUnavailable, match=r"nothing read for 0\.5 s"):
            await names(client, read_timeout=0.5, into=seen)
        assert 0.45 < time.monotonic() - started < 2
        assert seen == ["p1"]


async def test_a_server_slow_but_alive_is_not_timed_out() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_CHUNKED)
        data = chunk(event(1))
        for i in range(0, len(data), 10):   # ten bytes every 0.3 s, timeout 0.5 s: 2.4 s in all
            writer.write(data[i:i + 10])
            await asyncio.sleep(0.3)
        writer.write(b"0\r\n\r\n")

    async with serving(trickle) as client:
        assert await names(client, read_timeout=0.5) == ["p1"]


async def test_a_connection_closed_inside_a_chunk_is_unavailable_after_what_came_before() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_CHUNKED + chunk(event(1)) + chunk(event(2))[:20])

    async with serving(cut) as client:
        seen: list[str] = []
        with pytest.raises(KubeUnavailable, match="closed before the body's end"):
            await names(client, into=seen)
        assert seen == ["p1"]


ERRORS: dict[str, tuple[bytes, type[KubeApiError], str]] = {
    "a Status body": (
        b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk(b'{"kind":"Status","code":410,"reason":"Expired","message":"too old"}') + b"0\r\n\r\n",
        Gone, "410 Expired: too old"),
    "a plain-text body": (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 12\r\n\r\nupstream off",
                          KubeApiError, "502 : upstream off"),
}


@pytest.mark.parametrize(("answer", "kind", "message"), ERRORS.values(), ids=ERRORS.keys())
async def test_an_error_status_raises_with_its_body(answer: bytes, kind: type[KubeApiError],
                                                    message: str) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await reader.read()               # keep-alive: the body's framing ends it, not the close

    async with serving(refuse) as client:
        with pytest.raises(kind, match=message):
            await asyncio.wait_for(names(client), 3)


async def test_an_answer_that_is_not_http_is_unavailable() -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    async with serving(babble) as client:
        with pytest.raises(KubeUnavailable, match=r"not an HTTP/1\.x status line"):
            await names(client)


async def test_an_event_that_is_not_json_is_unavailable() -> None:
    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_CHUNKED + chunk(b"<html>\n") + b"0\r\n\r\n")

    async with serving(garble) as client:
        with pytest.raises(KubeUnavailable, match="a line that is not JSON"):
            await names(client)


async def test_a_client_without_a_config_says_how_to_make_one() -> None:
    async with KubeClient(httpx.AsyncClient()) as client:
        with pytest.raises(KubeError, match="made without a KubeConfig") as caught:
            await anext(client.stream_watch("/api/v1/pods"))
    assert caught.value.hint == "make it with KubeClient.from_config(config)"
