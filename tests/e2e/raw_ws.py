"""A WebSocket client on a bare TCP socket, for tests of clients that misbehave the way real ones do.

Client libraries read their socket in the background (``websockets`` keeps reading even with
``max_queue=1``) and answer pings on their own, so with them a server never meets a client that
stops reading or one that never answers a ping. This one does only what the test says: the
handshake by hand, masked binary frames out, and frames in only when the test calls ``recv`` —
between calls nothing reads the socket, and with a tiny ``SO_RCVBUF`` the kernel's buffers fill
and the server's sends block. Pings are read like any frame and never answered.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import struct
import time
from dataclasses import dataclass

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def plain(data: bytes) -> str:
    """Terminal output as text: no escape sequences, no carriage returns."""
    return ANSI.sub("", data.decode(errors="replace")).replace("\r", "")


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes

    @property
    def close(self) -> tuple[int, str]:
        """A close frame's code and reason (1005: none given)."""
        if len(self.payload) < 2:
            return 1005, ""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:].decode(errors="replace")


class RawWebSocket:
    """One client connection; every read is bounded by ``timeout`` seconds (nothing hangs)."""

    def __init__(self, host: str, port: int, path: str, *, headers: dict[str, str],
                 rcvbuf: int | None = None, answer_pings: bool = False, timeout: float = 20.0) -> None:
        self.answer_pings = answer_pings
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect: the window the client advertises stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise AssertionError(f"no WebSocket upgrade: {head.decode(errors='replace')}")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send_binary(self, payload: bytes, *, opcode: int = OP_BINARY) -> None:
        """One masked frame (a client must mask), binary unless told."""
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> Frame:
        """The next frame, whatever it is; EOFError at the end. Pings are returned, and answered only
        with ``answer_pings`` (a client that reads again is then alive again)."""
        first, second = self._take(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        mask = self._take(4) if second & 0x80 else b""
        payload = self._take(n)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if first & 0x0F == OP_PING and self.answer_pings:
            self.send_binary(payload, opcode=OP_PONG)
        return Frame(first & 0x0F, payload)

    def read_until(self, pattern: str, *, timeout: float = 30) -> str:
        """Read until the terminal output (as ``plain`` text) matches ``pattern`` (multiline); its tail."""
        seen, deadline = b"", time.monotonic() + timeout
        while not re.search(pattern, text := plain(seen), re.M):
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s: {seen[-300:]!r}"
            frame = self.recv()
            if frame.opcode == OP_BINARY:
                seen = seen[-8192:] + frame.payload
        return text

    def read_to_close(self, *, deadline_s: float, keep: int = 8192) -> tuple[bytes, Frame | None]:
        """Everything up to the close frame (or the end of the connection): the last ``keep`` bytes of
        data and the close frame, if one came. Bounded by ``deadline_s``."""
        tail, deadline = b"", time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                frame = self.recv()
            except (EOFError, ConnectionError):
                return tail, None
            if frame.opcode == OP_CLOSE:
                return tail, frame
            if frame.opcode in (OP_BINARY, OP_TEXT, OP_CONTINUATION):
                tail = (tail + frame.payload)[-keep:]
        raise AssertionError(f"no close within {deadline_s} s; last data {tail[-300:]!r}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
