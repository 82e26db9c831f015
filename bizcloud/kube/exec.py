"""A process inside a pod's container over the Kubernetes exec API's WebSocket (``v5.channel.k8s.io``).

The WebShell's Kubernetes backend (``bizcloud.webshell.backends``) and ``bizcloud shell`` reach
containers through this: one WebSocket to the API server, every message binary, its first byte
the channel — 0 stdin, 1 stdout, 2 stderr, 3 the exit status (a ``Status`` object), 4 the
terminal size (``{"Width": w, "Height": h}``), and, new in v5, 255 to close a channel (the
client closes stdin with ``[255, 0]``). A pod or container that does not exist is answered by
the API server before the upgrade, and raised here as the matching ``KubeApiError``.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bizcloud.kube.config import KubeConfig
from bizcloud.kube.errors import KubeApiError, KubeUnavailable

SUBPROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_MESSAGE = 1 << 20


def exec_path(*, namespace: str, pod: str, command: Sequence[str], container: str | None = None,
              tty: bool = True, stdin: bool = True) -> str:
    """The exec subresource's path with its query (one ``command`` per argv word). Purely computational."""
    query: list[tuple[str, str]] = [("command", word) for word in command]
    query += [("stdin", str(stdin).lower()), ("stdout", "true"), ("stderr", str(not tty).lower()),
              ("tty", str(tty).lower())]
    if container:
        query.append(("container", container))
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"


class ExecStream:
    """One running exec: read output, write input, resize, close stdin; ``status`` once it ended."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.status: dict[str, Any] | None = None

    async def read(self) -> bytes | None:
        """The next piece of output (stdout or stderr); None when the process and the stream ended."""
        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed:
                return None
            if isinstance(message, str):
                message = message.encode()
            if not message:
                continue
            channel, payload = message[0], message[1:]
            if channel in (STDOUT, STDERR):
                if payload:
                    return payload
            elif channel == ERROR:
                try:
                    self.status = json.loads(payload or b"{}")
                except ValueError:
                    self.status = {"status": "Failure", "message": payload.decode(errors="replace")}

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send(bytes([STDIN]) + data)
        except ConnectionClosed as e:
            raise KubeUnavailable("the exec stream is closed") from e

    async def resize(self, *, cols: int, rows: int) -> None:
        try:
            await self._ws.send(bytes([RESIZE]) + json.dumps({"Width": cols, "Height": rows}).encode())
        except ConnectionClosed as e:
            raise KubeUnavailable("the exec stream is closed") from e

    async def close_stdin(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(bytes([CLOSE, STDIN]))

    async def close(self) -> None:
        await self._ws.close()

    def exit_code(self) -> int | None:
        """The process's exit code from the final Status: 0 on Success, the ExitCode cause otherwise."""
        if self.status is None:
            return None
        if self.status.get("status") == "Success":
            return 0
        for cause in (self.status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    return None
        return None


async def open_exec(config: KubeConfig, *, namespace: str, pod: str, command: Sequence[str],
                    container: str | None = None, tty: bool = True, ping_interval: float | None = 20.0,
                    open_timeout: float = 15.0) -> ExecStream:
    """Start ``command`` in ``pod`` and return its stream; ``KubeApiError`` (NotFound…) if refused."""
    base = config.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    uri = base + exec_path(namespace=namespace, pod=pod, command=command, container=container, tty=tty)
    headers = {}
    if token := config.bearer_token():
        headers["Authorization"] = f"Bearer {token}"
    context: ssl.SSLContext | None = config.ssl_context() if uri.startswith("wss://") else None
    try:
        ws = await connect(uri, ssl=context, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                           additional_headers=headers, ping_interval=ping_interval,
                           ping_timeout=ping_interval, max_size=MAX_MESSAGE, open_timeout=open_timeout,
                           compression=None)
    except InvalidStatus as e:
        response = e.response
        try:
            body: Any = json.loads(response.body or b"{}")
        except ValueError:
            body = {"message": (response.body or b"").decode(errors="replace")[:200]}
        raise KubeApiError.from_status(response.status_code, body) from e
    except (OSError, TimeoutError, InvalidHandshake) as e:
        raise KubeUnavailable(f"exec in {namespace}/{pod}: {type(e).__name__}: {e}",
                              hint="is the API server up? `bizcloud cluster status`") from e
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        raise KubeUnavailable(f"the API server does not speak {SUBPROTOCOL} (it chose {ws.subprotocol!r})",
                              hint="Kubernetes 1.30 or newer is needed for the WebShell")
    return ExecStream(ws)


__all__ = ["SUBPROTOCOL", "ExecStream", "exec_path", "open_exec"]
