"""The WebShell's WebSocket endpoints: authenticate, authorize, open the backend, bridge, audit.

``/api/v1/shell/kube/{namespace}/{pod}`` (optional ``?container=``) and
``/api/v1/shell/docker/{container}``, for the console's terminal and ``bizcloud shell``. No
user: 401; a user who may not: 403 — both before the upgrade, both audited. A pod or container
that is not there: the socket opens and the terminal says so, then closes (no hung socket).
A client that stops keeping up (it stops reading, or leaves a ping unanswered) is dropped with a
last line in the terminal and a close code and reason saying which (``ClientStalled``,
``ClientUnresponsive``). Each session is one audit row (start, end, outcome) and one asciicast
recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from bizcloud.accounts.roles import Action, Role, decide
from bizcloud.accounts.store import AccountStore, UserOut
from bizcloud.errors import KubeError
from bizcloud.kube.client import KubeClient
from bizcloud.kube.config import KubeConfig
from bizcloud.kube.errors import NotFound
from bizcloud.web.auth import authenticate, production_envs, scope_headers, service_owners
from bizcloud.web.ws_protocol import LAST
from bizcloud.webshell.asciicast import Recorder
from bizcloud.webshell.backends import ShellSession, open_docker_shell, open_kube_shell
from bizcloud.webshell.bridge import Ending, bridge, notice, parse_resize
from bizcloud.webshell.docker import DockerEngine
from bizcloud.webshell.errors import ClientUnresponsive, ShellError, TargetGone

LOG_IN = "log in, or send Authorization: Bearer <token>"
CLOSE_TIMEOUT_S = 2.0
# Our pings on the exec stream find a dead API server connection. Their pongs queue behind the
# shell's output, so under a flood to a slow client a short timeout would cut a live session: the
# idle side is covered by the session's keepalive (a resize frame every keepalive interval).
EXEC_PING_S = 30.0
router = APIRouter(prefix="/api/v1/shell", tags=["webshell"])
log = logging.getLogger("bizcloud.webshell")


class _Peer:
    """The client's WebSocket as the bridge sees it: binary frames in, binary frames out."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._gone = False

    async def receive(self) -> bytes | None:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            self._gone = True
            return None
        if message["type"] == "websocket.disconnect":
            self._gone = True
            if message.get("code") == ClientUnresponsive.close_code:  # the server's keepalive said so
                raise ClientUnresponsive(str(message.get("reason") or "the client did not answer pings"))
            return None
        data = message.get("bytes")
        if data is None and message.get("text") is not None:
            data = str(message["text"]).encode()
        return data or b""

    async def send(self, data: bytes, *, last: bool = False) -> None:
        if self._gone:
            return
        if last:
            await self._ws.send({"type": "websocket.send", "bytes": data, LAST: True})
        else:
            await self._ws.send_bytes(data)


async def _deny(ws: WebSocket, accounts: AccountStore, user: UserOut | None, target: str, *, code: int,
                reason: str) -> None:
    record = await asyncio.to_thread(accounts.audit_start, user=user.name if user else "anonymous",
                                     action="shell", target=target, detail={"reason": reason},
                                     client=ws.client.host if ws.client else None)
    await asyncio.to_thread(accounts.audit_finish, record_id=record, status=code)
    body = json.dumps({"detail": reason}).encode()
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(Response(body, status_code=code, media_type="application/json"))
    else:
        await ws.close(code=1008, reason=reason[:120])


def _initial_size(ws: WebSocket) -> tuple[int, int]:
    size = parse_resize(json.dumps({"cols": ws.query_params.get("cols", "80"),
                                    "rows": ws.query_params.get("rows", "24")}).encode())
    return size or (80, 24)


async def _run(ws: WebSocket, accounts: AccountStore, user: UserOut, *, target: str,
               opener: Any, detail: dict[str, Any]) -> None:
    """Accept, open the backend (or say why not, in the terminal), bridge, and audit the whole session."""
    cols, rows = _initial_size(ws)
    recordings = ws.app.state.recordings_dir
    name = f"{uuid.uuid4().hex}.cast"
    record = await asyncio.to_thread(accounts.audit_start, user=user.name, action="shell", target=target,
                                     detail=detail, client=ws.client.host if ws.client else None,
                                     recording=name)
    await ws.accept()
    recorder = Recorder(recordings / name, cols=cols, rows=rows, title=f"{user.name}: {target}")
    ending, status = Ending(""), 0
    try:
        session: ShellSession = await opener(cols, rows)
    except ShellError as e:
        ending, status = Ending(e.one_line()), 404 if isinstance(e, TargetGone) else 502
        recorder.output(notice(ending.reason))
        recorder.close()
        await ws.send_bytes(notice(ending.reason))
    else:
        state = ws.app.state
        ending = await bridge(_Peer(ws), session, recorder=recorder, keepalive_s=state.shell_keepalive_s,
                              stall_s=getattr(state, "shell_stall_s", None))
    finally:
        await asyncio.to_thread(accounts.audit_finish, record_id=record, status=status,
                                detail={"outcome": ending.reason, "close_code": ending.close_code})
        await _close(ws, ending)


async def _close(ws: WebSocket, ending: Ending) -> None:
    """The close frame with the ending's code and reason; queued even behind a full buffer (``LAST``),
    and not waited for long: a stalled client may never take it."""
    if not ws.client_state is ws.application_state is WebSocketState.CONNECTED:
        return
    reason = ending.reason.encode()[:123].decode(errors="ignore") if ending.close_code != 1000 else ""
    close = {"type": "websocket.close", "code": ending.close_code, "reason": reason, LAST: True}
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.send(close), CLOSE_TIMEOUT_S)


def _who(ws: WebSocket) -> tuple[AccountStore, dict[str, str]]:
    return ws.app.state.account_store, scope_headers(ws.scope)


@router.websocket("/kube/{namespace}/{pod}")
async def kube_shell(ws: WebSocket, namespace: str, pod: str) -> None:
    accounts, headers = _who(ws)
    container = ws.query_params.get("container") or None
    target = f"kube:{namespace}/{pod}" + (f"/{container}" if container else "")
    user = await authenticate(accounts, headers)
    if user is None:
        return await _deny(ws, accounts, None, target, code=401, reason=LOG_IN)
    if user.role is Role.VIEWER:
        return await _deny(ws, accounts, user, target, code=403, reason="a viewer may only read")
    config: KubeConfig | None = ws.app.state.kube_config
    if config is None:
        return await _deny(ws, accounts, user, target, code=503, reason="no Kubernetes cluster is configured")
    service, env = None, None
    try:
        async with KubeClient.from_config(config) as client:
            found = await client.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        labels = (found.get("metadata") or {}).get("labels") or {}
        service = labels.get("bizcloud.io/service")
        env = labels.get("bizcloud.io/env") or (namespace[3:] if namespace.startswith("bc-") else None)
    except NotFound:
        pass  # the terminal will say so, from the exec's own answer
    except KubeError as e:
        return await _deny(ws, accounts, user, target, code=503, reason=e.one_line())
    owners = await asyncio.to_thread(service_owners, ws.app.state.catalog_store, service) if service else None
    decision = decide(user=user.name, role=user.role, action=Action.SHELL, service=service, env=env,
                      owners=owners or frozenset(), production_envs=production_envs(ws))
    if not decision.allowed:
        return await _deny(ws, accounts, user, target, code=403, reason=decision.reason)
    keepalive = ws.app.state.shell_keepalive_s

    async def opener(cols: int, rows: int) -> ShellSession:
        return await open_kube_shell(config, namespace=namespace, pod=pod, container=container,
                                     cols=cols, rows=rows, ping_interval=max(keepalive, EXEC_PING_S))

    await _run(ws, accounts, user, target=target, opener=opener,
               detail={"service": service, "env": env, "reason": decision.reason})
    return None


@router.websocket("/docker/{container}")
async def docker_shell(ws: WebSocket, container: str) -> None:
    accounts, headers = _who(ws)
    target = f"docker:{container}"
    user = await authenticate(accounts, headers)
    if user is None:
        return await _deny(ws, accounts, None, target, code=401, reason=LOG_IN)
    if user.role is Role.VIEWER:
        return await _deny(ws, accounts, user, target, code=403, reason="a viewer may only read")
    docker_host: str = ws.app.state.docker_host
    service, env = None, None
    engine = DockerEngine(docker_host)
    try:
        labels = ((await engine.inspect_container(container)).get("Config") or {}).get("Labels") or {}
        service, env = labels.get("bizcloud.io/service"), labels.get("bizcloud.io/env")
    except ShellError:
        pass  # the terminal will say so
    finally:
        await engine.aclose()
    owners = await asyncio.to_thread(service_owners, ws.app.state.catalog_store, service) if service else None
    decision = decide(user=user.name, role=user.role, action=Action.SHELL, service=service, env=env,
                      owners=owners or frozenset(), production_envs=production_envs(ws))
    if not decision.allowed:
        return await _deny(ws, accounts, user, target, code=403, reason=decision.reason)

    async def opener(cols: int, rows: int) -> ShellSession:
        return await open_docker_shell(docker_host, container=container, cols=cols, rows=rows)

    await _run(ws, accounts, user, target=target, opener=opener,
               detail={"service": service, "env": env, "reason": decision.reason})
    return None
