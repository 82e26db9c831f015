"""HTTP/1.1 responses read from raw bytes: the status line and headers, the body de-chunked, lines.

The parsing half of the watch reader (``bizcloud.kube.watchstream`` does the socket half): the
API server answers a watch with one long ``Transfer-Encoding: chunked`` response holding one JSON
event per line. Reading it in big blocks and splitting it here costs a few string searches per
event, where a general HTTP client hands every HTTP chunk up through several layers one at a
time (half of the monitor's watch-reading time at 10,000 pods).

Purely computational, no I/O: each class is fed bytes as they arrive, in pieces split anywhere,
and returns what those bytes completed. HTTP/1.1 only (what the API server speaks to a client
that offers no other protocol); an answer that breaks the framing raises ``MalformedResponse``
naming what was wrong, never a half-parsed value.
"""

from __future__ import annotations

MAX_HEAD_BYTES = 64 * 1024      # status line plus headers; the API server sends a few hundred
MAX_LINE_BYTES = 8 * 1024       # one chunk-size line or trailer field


class MalformedResponse(ValueError):  # noqa: N818 - reads as what happened
    """The bytes are not a well-formed HTTP/1.1 response (bad status line, header or chunk size)."""


class ResponseHead:
    """The status line and headers; header names lower-cased, repeated ones joined with ", ".

    A plain class and int states below, not a dataclass or NamedTuple and an Enum: this module
    loads with every monitor start, and each of those costs up to half a millisecond at import.
    """

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str]) -> None:
        self.status, self.reason, self.headers = status, reason, headers

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResponseHead) and (self.status, self.reason, self.headers) == (
            other.status, other.reason, other.headers)

    def __hash__(self) -> int:
        return hash((self.status, self.reason))

    def __repr__(self) -> str:
        return f"ResponseHead({self.status!r}, {self.reason!r}, {self.headers!r})"


def parse_head(buffer: bytes) -> tuple[ResponseHead, int] | None:
    """The head at the start of ``buffer`` and where its body starts, or None if it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise MalformedResponse(f"no end of the response head within {MAX_HEAD_BYTES} bytes")
        return None
    status_line, *lines = buffer[:end].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise MalformedResponse(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise MalformedResponse(f"not a header field: {line[:80]!r}")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return ResponseHead(int(code), reason, headers), end + 4


# BodyDecoder's states
_SIZE = 0           # waiting for a chunk-size line
_DATA = 1           # inside a chunk's data
_DATA_END = 2       # waiting for the CRLF after a chunk's data
_TRAILER = 3        # after the last chunk: trailer fields until an empty line
_DONE = 4


class BodyDecoder:
    """The body's bytes without their framing, as ``feed`` is given the bytes after the head.

    Framing by the head (RFC 9112 §6.3): ``Transfer-Encoding: chunked``; else ``Content-Length``;
    else everything until the server closes the connection. ``done`` says the body is complete;
    ``finish`` is called at the end of the connection and raises if the body was cut short.
    """

    def __init__(self, head: ResponseHead) -> None:
        encoding = head.headers.get("transfer-encoding", "").strip().lower()
        length = head.headers.get("content-length")
        self._chunked = bool(encoding)
        self._remaining = -1          # -1: until the connection closes
        if encoding and encoding != "chunked":
            raise MalformedResponse(f"unsupported Transfer-Encoding {encoding!r} (only chunked is read)")
        if not encoding and length is not None:
            if not length.isdigit():
                raise MalformedResponse(f"Content-Length is not a number: {length[:40]!r}")
            self._remaining = int(length)
        coding = head.headers.get("content-encoding", "").strip().lower()
        if coding not in ("", "identity"):
            raise MalformedResponse(f"unsupported Content-Encoding {coding!r} (identity was asked for)")
        self._state = _SIZE if self._chunked else _DATA
        if self._remaining == 0:
            self._state = _DONE
        self._buffer = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        """The body bytes that ``data`` completes, in order (bytes after the body are ignored)."""
        if not self._chunked:
            return self._feed_plain(data)
        buffer = self._buffer + data if self._buffer else data
        pos, size, out = 0, len(buffer), []
        state = self._state
        while True:
            if state == _SIZE:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    _check_line(size - pos, "chunk-size line")
                    break
                self._remaining = _chunk_size(buffer[pos:end])
                pos = end + 2
                state = _DATA if self._remaining else _TRAILER
            elif state == _DATA:
                take = min(self._remaining, size - pos)
                if take:
                    out.append(buffer[pos:pos + take])
                    pos += take
                    self._remaining -= take
                if self._remaining:
                    break
                state = _DATA_END
            elif state == _DATA_END:
                if size - pos < 2:
                    break
                if buffer[pos:pos + 2] != b"\r\n":
                    raise MalformedResponse(f"chunk data not followed by CRLF: {buffer[pos:pos + 20]!r}")
                pos += 2
                state = _SIZE
            elif state == _TRAILER:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    _check_line(size - pos, "trailer field")
                    break
                if end == pos:
                    state = _DONE
                pos = end + 2            # a trailer field is read past: nothing here needs one
            else:
                break
        self._state = state
        self._buffer = buffer[pos:] if state != _DONE else b""
        return out

    def finish(self) -> None:
        """The connection ended: fine after a complete body or one delimited by the close."""
        if self._state == _DONE or (not self._chunked and self._remaining < 0):
            self._state = _DONE
            return
        where = ("the last chunk or the trailers missing" if self._chunked
                 else f"{self._remaining} bytes short of Content-Length")
        raise MalformedResponse(f"the connection closed before the body's end ({where})")

    def _feed_plain(self, data: bytes) -> list[bytes]:
        if self._state == _DONE or not data:
            return []
        if self._remaining < 0:
            return [data]
        data = data[:self._remaining]
        self._remaining -= len(data)
        if not self._remaining:
            self._state = _DONE
        return [data]


class LineSplitter:
    """Newline-delimited records out of pieces split anywhere; blank lines dropped."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, pieces: list[bytes]) -> list[bytes]:
        if not pieces:
            return []
        if self._pending:
            pieces = [self._pending, *pieces]
        lines = (pieces[0] if len(pieces) == 1 else b"".join(pieces)).split(b"\n")
        self._pending = lines.pop()
        return [line for line in lines if line.strip()]

    def finish(self) -> list[bytes]:
        """The last line, if the body did not end with a newline."""
        last, self._pending = self._pending, b""
        return [last] if last.strip() else []


class ResponseLines:
    """One whole response as its bytes arrive: the head, then a 2xx body's lines as they complete.

    The body of any other status is kept (up to ``max_error_body`` bytes) rather than split, for
    the error it describes: read ``error_body`` once ``done``. ``done`` says the body ended by its
    own framing; a body delimited by the connection's close ends with ``finish``.
    """

    def __init__(self, *, max_error_body: int = 1024 * 1024) -> None:
        self.head: ResponseHead | None = None
        self.error_body = b""
        self._max_error_body = max_error_body
        self._buffer = b""
        self._body: BodyDecoder | None = None
        self._lines = LineSplitter()
        self._ok = False

    @property
    def ok(self) -> bool:
        """The head arrived and its status is 2xx."""
        return self._ok

    @property
    def done(self) -> bool:
        return self._body is not None and self._body.done

    def feed(self, data: bytes) -> list[bytes]:
        """The body lines that ``data`` completes (none before the head, none for a non-2xx body)."""
        if self._body is None:
            self._buffer += data
            if (parsed := parse_head(self._buffer)) is None:
                return []
            self.head, start = parsed
            self._ok = 200 <= self.head.status < 300
            self._body = BodyDecoder(self.head)
            data, self._buffer = self._buffer[start:], b""
        pieces = self._body.feed(data)
        if not self._ok:
            room = self._max_error_body - len(self.error_body)
            if room > 0:
                self.error_body += b"".join(pieces)[:room]
            return []
        lines = self._lines.feed(pieces)
        return lines + self._lines.finish() if self._body.done else lines

    def finish(self) -> list[bytes]:
        """The connection closed: the last line, if any; raises if the response was cut short."""
        if self._body is None:
            raise MalformedResponse("the connection closed before the response head")
        self._body.finish()
        return self._lines.finish() if self._ok else []


def _chunk_size(line: bytes) -> int:
    """A chunk-size line's size; chunk extensions (``;name=value``) are read past."""
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        raise MalformedResponse(f"bad chunk size line: {line[:40]!r}")
    return int(digits, 16)


def _check_line(length: int, what: str) -> None:
    if length > MAX_LINE_BYTES:
        raise MalformedResponse(f"{what} longer than {MAX_LINE_BYTES} bytes")


__all__ = ["BodyDecoder", "LineSplitter", "MalformedResponse", "ResponseHead", "ResponseLines", "parse_head"]
