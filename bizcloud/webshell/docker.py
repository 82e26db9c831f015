"""The Docker Engine API's exec, the seed's original WebShell path: no agent, only the engine's socket.

Create an exec (``POST /containers/{id}/exec``), start it with ``Upgrade: tcp`` so the engine hands
over the raw connection (``101 UPGRADED``; with a TTY the stream is the terminal's bytes, not the
multiplexed stdout/stderr framing), resize with ``POST /exec/{id}/resize``, and read the exit
code from ``GET /exec/{id}/json`` at the end. httpx does the plain calls over the Unix socket;
the hijacked stream is an asyncio Unix connection, since httpx cannot hand a connection over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import httpx

from bizcloud.webshell.errors import BackendUnavailable, TargetGone

READ_CHUNK = 32 * 1024


def socket_path(docker_host: str) -> str:
    """The Unix socket of a ``unix://`` Docker host; other schemes are not supported here."""
    if not docker_host.startswith("unix://"):
        raise BackendUnavailable(f"docker host {docker_host!r} is not a unix:// socket",
                                 hint="set BIZCLOUD_DOCKER_HOST=unix:///path/to/docker.sock")
    return docker_host.removeprefix("unix://")


class DockerEngine:
    """The few Docker Engine API calls the WebShell needs, on one Unix socket."""

    def __init__(self, docker_host: str) -> None:
        self.socket = socket_path(docker_host)
        self._http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.socket),
                                       base_url="http://docker", timeout=15.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise BackendUnavailable(f"the Docker Engine at {self.socket} does not answer: {e}",
                                     hint="is dockerd running? check BIZCLOUD_DOCKER_HOST") from e

    async def inspect_container(self, container: str) -> dict[str, Any]:
        response = await self._call("GET", f"/containers/{container}/json")
        if response.status_code == 404:
            raise TargetGone(f"container {container} does not exist (or was removed)",
                             hint="`docker ps` lists the running containers")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def exec(self, container: str, command: Sequence[str], *, cols: int, rows: int) -> DockerExec:
        """Create and start ``command`` in ``container`` with a TTY; returns the hijacked stream."""
        body = {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": True,
                "Cmd": list(command), "ConsoleSize": [rows, cols], "Env": ["TERM=xterm-256color"]}
        response = await self._call("POST", f"/containers/{container}/exec", json=body)
        if response.status_code in (404, 409):
            message = _message(response)
            raise TargetGone(f"container {container}: {message}",
                             hint="the container is gone or stopped; `docker ps` lists the running ones")
        response.raise_for_status()
        exec_id = str(response.json()["Id"])
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket)
        except OSError as e:
            raise BackendUnavailable(f"cannot connect to the Docker Engine at {self.socket}: {e}") from e
        payload = json.dumps({"Detach": False, "Tty": True, "ConsoleSize": [rows, cols]}).encode()
        writer.write(b"".join([
            f"POST /exec/{exec_id}/start HTTP/1.1\r\n".encode(), b"Host: docker\r\n",
            b"Content-Type: application/json\r\n", b"Connection: Upgrade\r\n", b"Upgrade: tcp\r\n",
            f"Content-Length: {len(payload)}\r\n\r\n".encode(), payload]))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status not in (101, 200):
            writer.close()
            raise TargetGone(f"container {container}: the engine refused the exec ({status})")
        return DockerExec(self, exec_id, reader, writer)

    async def resize(self, exec_id: str, *, cols: int, rows: int) -> None:
        await self._call("POST", f"/exec/{exec_id}/resize", params={"h": rows, "w": cols})

    async def exit_code(self, exec_id: str) -> int | None:
        response = await self._call("GET", f"/exec/{exec_id}/json")
        if response.status_code != 200:
            return None
        code = response.json().get("ExitCode")
        return int(code) if code is not None else None


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200]


class DockerExec:
    """One running exec's terminal stream."""

    def __init__(self, engine: DockerEngine, exec_id: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.engine = engine
        self.exec_id = exec_id
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes | None:
        try:
            data = await self._reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            return None
        return data or None

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()  # backpressure: a huge paste waits for the process to read it

    async def resize(self, *, cols: int, rows: int) -> None:
        with contextlib.suppress(httpx.HTTPError, BackendUnavailable):
            await self.engine.resize(self.exec_id, cols=cols, rows=rows)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
