"""A WebShell client that stops keeping up is dropped with a clear message, whichever path finds it.

Two servers of the module's own (own databases, ports 18940-18945, a 1-second keepalive), each with
the other path out of the way, so each test shows one path:

- *stopped reading* (back-pressure: one send to the client waits ``BIZCLOUD_SHELL_STALL_S``=4 s;
  ping timeout 120 s): a bare-socket client (``raw_ws``: a 4 KiB receive buffer, and nothing reads
  the socket between its calls — client libraries keep reading in the background) floods its shell
  with ``yes`` and stops reading; the kernel buffers fill and the server's send waits. When the
  client reads again it finds the last line and the close frame 4001 with the reason;
- *stopped answering pings* (``BIZCLOUD_SHELL_PING_TIMEOUT_S``=3 s; stall limit 120 s): a
  bare-socket client that reads everything and never answers a ping gets the last line and 4002
  with the reason; and real Chromium on the console's shell page, through a TCP relay the test
  pauses (a network that stops passing the server's bytes: no ping reaches the browser, no pong
  comes back): once the relay passes bytes again, the terminal shows the last line and the page
  the close code 4002 and reason. The browser's pong and close reply must still reach the server
  then: a server that closed its socket at once would answer them with a reset, and the browser
  would report 1006 (``ShellWebSocketProtocol`` waits for the closing handshake).

All sessions' audit entries end with the reason and the close code. The shells are into a sample
pod of the module's throwaway namespace. Every test is bounded (``pytest.mark.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bizcloud.accounts.roles import Role
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from tests.e2e.conftest import demo_deployment, ready_pods, wait_for
from tests.e2e.console_fixtures import browser, create_users, login, own_stack
from tests.e2e.raw_ws import RawWebSocket, plain
from tests.e2e.test_console import _terminal_text

__all__ = ["browser"]  # the shared Chromium fixture

pytestmark = pytest.mark.e2e

STALL_S, PING_TIMEOUT_S, OUT_OF_THE_WAY_S = 4, 3, 120
READING_PORT, PINGS_PORT, RELAY_PORT = 18940, 18942, 18944


@dataclass
class Server:
    url: str
    token: str


@pytest.fixture(scope="module")
def pod(kubectl: Kubectl, namespace: str, sample_image: str) -> Iterator[str]:
    name = f"stall-{uuid.uuid4().hex[:6]}"
    kubectl.apply(demo_deployment(name=name, namespace=namespace, image=sample_image, replicas=1))
    try:
        found = wait_for(lambda: ready_pods(kubectl, namespace, f"bizcloud.io/service={name}"), timeout=120,
                         what="a ready sample pod")
        yield str(found[0]["metadata"]["name"])
    finally:
        kubectl.run("delete", "deployment", name, "-n", namespace, "--wait=false", check=False)


@contextlib.contextmanager
def _server(cluster: Settings, tmp: Any, port: int, **limits: float) -> Iterator[Server]:
    db_url = f"sqlite:///{tmp / 'catalog.db'}"
    tokens = create_users(db_url, {"olga": Role.OPS})
    env = {f"BIZCLOUD_{k.upper()}": str(v) for k, v in limits.items()}
    with own_stack(cluster, tmp, db_url=db_url, server_port=port, metrics_port=port + 1, lease="unused",
                   extra_env=env, monitor=False):
        yield Server(url=f"http://127.0.0.1:{port}", token=tokens["olga"])


@pytest.fixture(scope="module")
def reading_server(real_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _server(real_cluster, tmp_path_factory.mktemp("stall-reading"), READING_PORT,
                 shell_stall_s=STALL_S, shell_ping_timeout_s=OUT_OF_THE_WAY_S) as server:
        yield server


@pytest.fixture(scope="module")
def pings_server(real_cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _server(real_cluster, tmp_path_factory.mktemp("stall-pings"), PINGS_PORT,
                 shell_stall_s=OUT_OF_THE_WAY_S, shell_ping_timeout_s=PING_TIMEOUT_S) as server:
        yield server


def _shell_audit(server: Server, target: str) -> dict[str, Any]:
    """The newest finished shell session on ``target``, from the audit API."""
    def ended() -> dict[str, Any] | None:
        records = httpx.get(f"{server.url}/api/v1/audit", params={"limit": 50}, timeout=10,
                            headers={"Authorization": f"Bearer {server.token}"}).json()
        done = [r for r in records if r["action"] == "shell" and r["target"] == target and r["ended_at"]]
        return done[0] if done else None
    found: dict[str, Any] = wait_for(ended, timeout=30, what=f"the audit entry of the shell on {target}")
    return found


def _raw_shell(server: Server, namespace: str, pod: str, *, rcvbuf: int | None = None) -> RawWebSocket:
    port = int(server.url.rsplit(":", 1)[1])
    return RawWebSocket("127.0.0.1", port, f"/api/v1/shell/kube/{namespace}/{pod}",
                        headers={"Authorization": f"Bearer {server.token}"}, rcvbuf=rcvbuf)


@pytest.mark.timeout(300)  # the module's fixtures (server, pod) included
def test_a_client_that_stops_reading_is_told_so_when_it_reads_again(
        reading_server: Server, namespace: str, pod: str) -> None:
    """A client that truly stops reading: a bare socket with a 4 KiB receive buffer that stops calling
    ``recv`` while its shell floods. The kernel buffers fill, the server's send waits, and after
    ``STALL_S`` the server gives up; when the client reads again it finds, after the flood, the
    last line and the close frame 4001 with the reason."""
    reason = f"session closed: the client stopped reading for {STALL_S} s"
    with _raw_shell(reading_server, namespace, pod, rcvbuf=4096) as ws:
        ws.send_binary(b"\x00echo flooding; yes $(printf '%01023d' 0)\n")
        ws.read_until(r"^flooding\s*$")
        # Reads nothing: the server's send waits past the stall limit, and the server gives up. It
        # keeps the connection LINGER_S (10 s) after that, so the client reads again well before.
        time.sleep(STALL_S + 3)
        tail, close = ws.read_to_close(deadline_s=30)
    assert reason in plain(tail), tail[-300:]
    assert close is not None, f"the connection ended without a close frame; last data {tail[-300:]!r}"
    assert close.close == (4001, reason)
    record = _shell_audit(reading_server, f"kube:{namespace}/{pod}")
    assert record["detail"]["outcome"] == reason and record["detail"]["close_code"] == 4001


@pytest.mark.timeout(300)  # the module's fixtures (server, pod) included
def test_a_client_that_stops_answering_pings_is_told_so(pings_server: Server, namespace: str,
                                                         pod: str) -> None:
    """A client that reads everything but never answers a ping (a bare socket: libraries answer on
    their own): after ``PING_TIMEOUT_S`` unanswered the server says so in the terminal's last line,
    closes with 4002 and the reason, and the audit entry ends with both."""
    reason = f"session closed: the client did not answer pings for {PING_TIMEOUT_S} s"
    with _raw_shell(pings_server, namespace, pod) as ws:
        ws.send_binary(b"\x00echo ready\n")
        ws.read_until(r"^ready\s*$")
        started = time.monotonic()
        tail, close = ws.read_to_close(deadline_s=1 + PING_TIMEOUT_S + 15)
        waited = time.monotonic() - started
    assert reason in plain(tail), tail[-300:]
    assert close is not None, f"the connection ended without a close frame; last data {tail[-300:]!r}"
    assert close.close == (4002, reason)
    assert waited < 1 + PING_TIMEOUT_S + 2, f"dropped after {waited:.1f} s, not within a ping and its timeout"
    record = _shell_audit(pings_server, f"kube:{namespace}/{pod}")
    assert record["detail"]["outcome"] == reason and record["detail"]["close_code"] == 4002


class Relay:
    """A TCP relay to the server whose server-to-client direction the test can pause: a network
    that stops passing the server's bytes (its pings among them) and passes them again later.
    A side that closes is closed on the other side too (as a host's socket would be: what comes
    after meets a reset), so a server that closes before the closing handshake fails the test."""

    def __init__(self, listen: int, upstream: int) -> None:
        self.listen, self.upstream = listen, upstream
        self.loop = asyncio.new_event_loop()
        self.flowing = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay", daemon=True)

    def __enter__(self) -> Relay:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def pause(self, paused: bool) -> None:
        self.loop.call_soon_threadsafe(self.flowing.clear if paused else self.flowing.set)

    async def _start(self) -> None:
        self.flowing.set()
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.listen)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gated: bool) -> None:
            with contextlib.suppress(OSError):
                while True:
                    if gated:
                        await self.flowing.wait()
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))


@pytest.mark.timeout(300)
def test_a_browser_that_stops_answering_pings_is_told_so_in_the_terminal(
        browser: Any, pings_server: Server, namespace: str, pod: str) -> None:
    with Relay(RELAY_PORT, PINGS_PORT) as relay:
        url = f"http://127.0.0.1:{RELAY_PORT}"
        page = browser.new_page()
        login(page, url, "olga")
        page.goto(f"{url}/console/shell?namespace={namespace}&pod={pod}")
        page.wait_for_function("() => document.getElementById('shell-state').textContent === 'connected'")
        time.sleep(1)
        page.keyboard.type("echo ready\n")
        wait_for(lambda: re.search(r"^ready\s*$", _terminal_text(page), re.M), timeout=20, what="ready")
        relay.pause(True)
        time.sleep(1 + PING_TIMEOUT_S + 3)  # a ping goes out within a keepalive, its pong never comes
        relay.pause(False)
        page.wait_for_function("() => window.bizcloudShellClose !== undefined", timeout=20_000)
        reason = f"session closed: the client did not answer pings for {PING_TIMEOUT_S} s"
        assert page.evaluate("() => window.bizcloudShellClose") == {"code": 4002, "reason": reason}
        assert reason in _terminal_text(page)
        assert page.locator("#shell-state").inner_text() == f"closed (4002): {reason}"
        page.close()
    record = _shell_audit(pings_server, f"kube:{namespace}/{pod}")
    assert record["detail"]["outcome"] == reason and record["detail"]["close_code"] == 4002
