"""The server's WebSocket protocol: uvicorn's, saying why when it drops a client that stopped keeping up.

uvicorn pings every client (``ws_ping_interval``) and, when a pong is late (``ws_ping_timeout``),
fails the connection with ``1011 keepalive ping timeout`` and tells the application nothing until
the socket is gone — which, for a client that stopped reading, is when its TCP connection dies.
A WebShell session then ends "client disconnected" at best, with no word in the terminal. This
subclass, used by ``bizcloud server``, changes three things, for the WebShell's paths only:

- a late pong ends the session as ``ClientUnresponsive``: the application gets the disconnect at
  once (code and reason), and the client is sent the terminal's last line and a close frame with
  that code and reason, queued behind whatever it has not read yet; the socket then stays open
  (``close_timeout``) for the client's close reply, so a client that reads again is told cleanly;
- a message the application sends with ``LAST`` set (the last line, the close frame) is queued at
  once instead of waiting for a full write buffer to drain: it is small, and it is what tells a
  stalled client why, if it ever reads again;
- a connection still not closed ``LINGER_S`` after the application finished is aborted, so a
  client frozen for good holds no socket or buffer in the server.

Without it (tests on plain uvicorn) the application still works: ``LAST`` is an extra key uvicorn
ignores, and a stalled client is found by the bridge's own stall limit.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from bizcloud.webshell.bridge import notice
from bizcloud.webshell.errors import ClientUnresponsive

LAST = "bizcloud.last"        # key in an ASGI websocket.send / websocket.close message
SHELL_PATHS = "/api/v1/shell/"
LINGER_S = 10.0               # as long as uvicorn gives a closing handshake


class ShellWebSocketProtocol(WebSocketsSansIOProtocol):
    def _is_shell(self) -> bool:
        scope = getattr(self, "scope", None)
        return scope is not None and str(scope.get("path", "")).startswith(SHELL_PATHS)

    def _open(self) -> bool:
        return (self.handshake_complete and not self.close_sent and not self.disconnected
                and not self.transport.is_closing())

    def keepalive_timeout(self) -> None:
        if not (self._is_shell() and self._open()):
            super().keepalive_timeout()
            return
        assert self.ping_timeout is not None  # a pong timer runs only with a timeout
        gone = ClientUnresponsive.no_pong(self.ping_timeout)
        self.pong_timer = None
        self.pending_ping_payload = None
        self.conn.send_binary(notice(gone.message))
        self._start_closing(gone.close_code, gone.message)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self._abort_later()

    async def send(self, message: Any) -> None:
        if not (message.get(LAST) and self._open()) or self.writable.is_set():
            await super().send(message)
            return
        if message["type"] == "websocket.send":
            data = message.get("bytes")
            self.conn.send_binary(data if data is not None else str(message.get("text", "")).encode())
        elif message["type"] == "websocket.close":
            self._start_closing(int(message.get("code", 1000)), str(message.get("reason") or ""))
        else:
            await super().send(message)
            return
        self.transport.write(b"".join(self.conn.data_to_send()))

    def _start_closing(self, code: int, reason: str) -> None:
        """The closing handshake, as the RFC has it: our close frame, then wait (``close_timeout``) for
        the client's, reading meanwhile. Closing the socket at once would make the client's pong or
        close reply, sent when it reads our frames, meet a reset — and a browser then reports 1006
        with no reason instead of the code and reason it was sent."""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.close_sent = True
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self._abort_later()

    def _abort_later(self) -> None:
        def abort() -> None:
            if not self.disconnected:
                self.transport.abort()
        self.loop.call_later(LINGER_S, abort)
