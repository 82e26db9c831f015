"""The console and the WebShell end to end: a real server and monitor, the real cluster, real Chromium.

The module starts its own `bizcloud monitor` and `bizcloud server` (their own catalog database,
state directory, Lease and ports in 18900-18999, a 1-second shell keepalive), deploys a sample
service of its own into a throwaway namespace, and drives Debian's Chromium with Playwright
(headless, nothing downloaded) through login, live instances, a shell and its replay. The
WebSocket-level checks (refusals, a missing pod, the Docker backend, idle sessions behind a proxy
with a short read timeout) speak to the same server with the `websockets` client.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bizcloud.accounts.roles import Role
from bizcloud.cluster import images
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from tests.e2e.conftest import demo_deployment, ready_pods, wait_for
from tests.e2e.console_fixtures import browser, create_users, in_thread, login, own_stack
from tests.e2e.raw_ws import OP_CLOSE, RawWebSocket

__all__ = ["browser"]  # the shared Chromium fixture

pytestmark = pytest.mark.e2e

SERVER_PORT, METRICS_PORT, PROXY_PORT = 18910, 18911, 18912


@dataclass
class Console:
    url: str
    ws_url: str
    tokens: dict[str, str]
    namespace: str
    service: str
    tmp: Path
    recordings: Path
    server_pid: int


@pytest.fixture(scope="module")
def console(real_cluster: Settings, kubectl: Kubectl, namespace: str, sample_image: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    db_url = f"sqlite:///{tmp / 'catalog.db'}"
    service = f"con-{uuid.uuid4().hex[:6]}"
    tokens = create_users(db_url, {"olga": Role.OPS, "vera": Role.VIEWER, "dev": Role.DEVELOPER})
    with own_stack(real_cluster, tmp, db_url=db_url, server_port=SERVER_PORT, metrics_port=METRICS_PORT,
                   lease=f"e2e-{service}") as procs:
        kubectl.apply(demo_deployment(name=service, namespace=namespace, image=sample_image, replicas=2))
        try:
            wait_for(lambda: len(ready_pods(kubectl, namespace, f"bizcloud.io/service={service}")) == 2,
                     timeout=120, what="two ready sample pods")
            yield Console(url=f"http://127.0.0.1:{SERVER_PORT}", ws_url=f"ws://127.0.0.1:{SERVER_PORT}",
                          tokens=tokens, namespace=namespace, service=service, tmp=tmp,
                          recordings=tmp / "state" / "recordings", server_pid=procs["server"].pid)
        finally:
            kubectl.run("delete", "deployment", service, "-n", namespace, "--wait=false", check=False)


def _pods(kubectl: Kubectl, console: Console) -> list[str]:
    return sorted(p["metadata"]["name"]
                  for p in ready_pods(kubectl, console.namespace, f"bizcloud.io/service={console.service}"))


def _terminal_text(page: Any) -> str:
    return str(page.evaluate("""() => {
        const b = window.bizcloudTerm.buffer.active, out = [];
        for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
        return out.join("\\n");
    }"""))


def _login(page: Any, console: Console, user: str = "olga") -> None:
    login(page, console.url, user)


def test_login_and_see_instances_by_group_updating_live(browser: Any, console: Console,
                                                         kubectl: Kubectl) -> None:
    page = browser.new_page()
    page.goto(f"{console.url}/console/")
    assert "/console/login" in page.url  # no session: the login page
    _login(page, console)
    page.wait_for_selector(f"text={console.service}", timeout=60_000)
    page.click(f"text={console.service}")
    for pod in _pods(kubectl, console):
        page.wait_for_selector(f"tr.instance[data-pod='{pod}']", timeout=60_000)
    assert page.locator("h3.group").first.inner_text().startswith("e2e / normal")
    # Scale out: the third pod appears without reloading the page (the change stream).
    kubectl.run("scale", f"deployment/{console.service}", "-n", console.namespace, "--replicas=3")
    wait_for(lambda: len(_pods(kubectl, console)) == 3, timeout=120, what="a third ready pod")
    for pod in _pods(kubectl, console):
        page.wait_for_selector(f"tr.instance[data-pod='{pod}']", timeout=60_000)
    page.close()


def test_webshell_hostname_resize_close_and_replay(browser: Any, console: Console, kubectl: Kubectl) -> None:
    pod = _pods(kubectl, console)[0]
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    _login(page, console)
    page.goto(f"{console.url}/console/shell?namespace={console.namespace}&pod={pod}")
    page.wait_for_function("() => document.getElementById('shell-state').textContent === 'connected'")
    page.wait_for_function("() => window.bizcloudTerm.buffer.active.getLine(0) !== undefined")
    time.sleep(1)
    page.keyboard.type("hostname\n")
    wait_for(lambda: re.search(rf"^{re.escape(pod)}\s*$", _terminal_text(page), re.M), timeout=20,
             what=f"the pod's name ({pod}) in the terminal")

    def stty() -> tuple[int, int]:
        marker = uuid.uuid4().hex[:6]
        page.keyboard.type(f"echo {marker} $(stty size)\n")
        found = wait_for(lambda: re.search(rf"^{marker} (\d+) (\d+)", _terminal_text(page), re.M), timeout=20,
                         what="stty size's answer")
        return int(found.group(1)), int(found.group(2))

    before = stty()
    cols_rows = page.evaluate("() => [window.bizcloudTerm.cols, window.bizcloudTerm.rows]")
    assert before == (cols_rows[1], cols_rows[0])  # stty: rows cols
    page.set_viewport_size({"width": 700, "height": 450})
    page.wait_for_function(f"() => window.bizcloudTerm.cols < {cols_rows[0]}")
    time.sleep(0.5)
    after = stty()
    assert after[1] < before[1] and after[0] < before[0], (before, after)
    page.keyboard.type("exit\n")
    page.wait_for_function("() => window.bizcloudShellClosed === true", timeout=20_000)
    assert "session ended (exit code 0)" in _terminal_text(page)
    # The audit log has the session, with its recording; the replay shows what the terminal showed.
    page.goto(f"{console.url}/console/audit")
    row = page.locator("tr", has_text=f"kube:{console.namespace}/{pod}").first
    assert "olga" in row.inner_text() and "shell" in row.inner_text()
    row.locator("a.replay").click()
    page.wait_for_function("() => window.bizcloudReplayDone === true", timeout=60_000)
    assert re.search(rf"^{re.escape(pod)}\s*$", _terminal_text(page), re.M)
    page.close()


async def _read_until(ws: ClientConnection, pattern: str, timeout: float = 20) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen += bytes(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))  # type: ignore[arg-type]
        except TimeoutError:
            break
        text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", seen.decode(errors="replace")).replace("\r", "")
        if re.search(pattern, text, re.M):
            return text
    pytest.fail(f"no {pattern!r} in the terminal within {timeout}s; got {seen[-500:]!r}")


def _headers(console: Console, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {console.tokens[user]}"}


@in_thread
async def test_viewer_and_anonymous_are_refused_and_audited(console: Console, kubectl: Kubectl) -> None:
    pod = _pods(kubectl, console)[0]
    url = f"{console.ws_url}/api/v1/shell/kube/{console.namespace}/{pod}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=_headers(console, "vera")):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as anonymous:
        async with connect(url):
            pass
    assert anonymous.value.response.status_code == 401
    async with httpx.AsyncClient(base_url=console.url) as http:
        viewer = _headers(console, "vera")
        deploy = await http.post("/api/v1/services", json={"name": "viewer-made"}, headers=viewer)
        assert deploy.status_code == 403
        assert (await http.post("/api/v1/services", json={"name": "nobody-made"})).status_code == 401
        assert (await http.get("/api/v1/audit")).status_code == 401
        ops = _headers(console, "olga")
        audit = (await http.get("/api/v1/audit", params={"limit": 20}, headers=ops)).json()
    seen = {(a["user"], a["action"], a["status"]) for a in audit}
    assert ("vera", "shell", 403) in seen and ("anonymous", "shell", 401) in seen
    assert ("vera", "POST /api/v1/services", 403) in seen
    assert ("anonymous", "POST /api/v1/services", 401) in seen


@in_thread
async def test_developer_needs_ownership_and_a_non_production_environment(console: Console,
                                                                          kubectl: Kubectl) -> None:
    pod = _pods(kubectl, console)[0]
    url = f"{console.ws_url}/api/v1/shell/kube/{console.namespace}/{pod}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=_headers(console, "dev")):
            pass
    assert refused.value.response.status_code == 403
    async with httpx.AsyncClient(base_url=console.url, headers=_headers(console, "olga")) as http:
        owned = await http.put(f"/api/v1/services/{console.service}", json={"owner": "dev"})
        assert owned.status_code == 200
    async with connect(url, additional_headers=_headers(console, "dev")) as ws:
        await ws.send(b"\x00hostname\n")
        await _read_until(ws, rf"^{re.escape(pod)}\s*$")


@in_thread
async def test_a_pod_that_does_not_exist_gets_a_clear_message_not_a_hung_socket(console: Console) -> None:
    url = f"{console.ws_url}/api/v1/shell/kube/{console.namespace}/no-such-pod"
    started = time.monotonic()
    async with connect(url, additional_headers=_headers(console, "olga")) as ws:
        text = await _read_until(ws, r"does not exist", timeout=20)
        assert "no-such-pod" in text
        await asyncio.wait_for(ws.wait_closed(), 10)
    assert time.monotonic() - started < 20


@in_thread
async def test_huge_paste_arrives_whole(console: Console, kubectl: Kubectl) -> None:
    pod = _pods(kubectl, console)[0]
    url = f"{console.ws_url}/api/v1/shell/kube/{console.namespace}/{pod}"
    size = 2 * 1024 * 1024
    async with connect(url, additional_headers=_headers(console, "olga"), max_size=1 << 22) as ws:
        await ws.send(b"\x00stty -echo; head -c " + str(size).encode() + b" | wc -c\n")
        await asyncio.sleep(1)
        line = b"x" * 1023 + b"\n"
        for start in range(0, size, 16 * 1024):
            await ws.send(b"\x00" + (line * 16)[: min(16 * 1024, size - start)])
        await _read_until(ws, rf"^\s*{size}\s*$", timeout=120)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _send_queue(local_port: int, remote_port: int) -> int:
    """Bytes the kernel holds unsent on the server's side of one loopback connection (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (local_port, remote_port):
            return int(fields[4].split(":")[0], 16)
    raise AssertionError(f"no connection {local_port} -> {remote_port}")


@pytest.mark.timeout(300)  # the module's fixtures included
def test_a_client_that_stops_reading_does_not_grow_the_servers_memory(console: Console,
                                                                      kubectl: Kubectl) -> None:
    """The shell floods its output (`yes` with 1 KiB lines; tens of MB/s when read) to a client that
    truly reads nothing for 7 s — a bare socket with a 4 KiB receive buffer that stops calling
    ``recv`` (client libraries keep reading in the background): the kernel's buffers fill (the
    server's side holds unsent bytes throughout), the server's memory stays flat (the pipeline
    waits: nothing is queued for the client), and once the client reads again the same session
    flows at full speed. (A client that reads nothing for 3 keepalives — 10 s here — while a send
    waits is dropped: ``stall_limit``; ``test_shell_stall`` shows that.)"""
    pod = _pods(kubectl, console)[0]
    before = _rss_mib(console.server_pid)
    peak, delivered, queued = before, 0, []
    with RawWebSocket("127.0.0.1", SERVER_PORT, f"/api/v1/shell/kube/{console.namespace}/{pod}",
                      headers=_headers(console, "olga"), rcvbuf=4096, answer_pings=True) as ws:
        ws.send_binary(b"\x00echo flooding; yes $(printf '%01023d' 0)\n")
        ws.read_until(r"^flooding\s*$")
        client_port = ws.sock.getsockname()[1]
        stalled = time.monotonic()
        while time.monotonic() - stalled < 7:  # reads nothing, within the stall limit
            time.sleep(0.5)
            peak = max(peak, _rss_mib(console.server_pid))
            queued.append(_send_queue(SERVER_PORT, client_port))
        reading = time.monotonic()
        while time.monotonic() - reading < 5:
            frame = ws.recv()
            assert frame.opcode != OP_CLOSE, f"the session was closed: {frame.close}"
            delivered += len(frame.payload)
    assert min(queued[2:]) > 0, f"the server's side never held unsent bytes: {queued}: the client read"
    rate = delivered / 5 / (1 << 20)
    assert rate > 5, f"only {rate:.1f} MiB/s came once reading: the shell did not flood"
    # Unbounded buffering would have held 7 s x that rate; the server grew by less than 64 MiB.
    assert peak - before < 64, f"the server grew from {before:.0f} MiB to {peak:.0f} MiB ({rate:.0f} MiB/s)"


@pytest.fixture(scope="module")
def docker_container(real_cluster: Settings) -> Iterator[str]:
    image = images.ensure_base_image(real_cluster)
    env = {**os.environ, "DOCKER_HOST": real_cluster.docker_host}
    name = f"bc-shell-{uuid.uuid4().hex[:6]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name, "--network", "none", image,
                    "sleep", "3600"], check=True, env=env, capture_output=True, timeout=60)
    yield name
    subprocess.run(["docker", "rm", "-f", name], check=False, env=env, capture_output=True, timeout=60)


@in_thread
async def test_docker_backend_opens_a_shell_in_a_real_container(console: Console,
                                                               docker_container: str) -> None:
    url = f"{console.ws_url}/api/v1/shell/docker/{docker_container}?cols=90&rows=20"
    async with connect(url, additional_headers=_headers(console, "olga")) as ws:
        await ws.send(b"\x00hostname\n")
        await _read_until(ws, rf"^{docker_container}\s*$")
        await ws.send(b"\x04" + json.dumps({"cols": 77, "rows": 33}).encode())  # accepted, not fatal
        await ws.send(b"\x00exit\n")
        await _read_until(ws, r"session ended \(exit code 0\)")
    gone = f"{console.ws_url}/api/v1/shell/docker/no-such-container"
    async with connect(gone, additional_headers=_headers(console, "olga")) as ws:
        await _read_until(ws, r"no-such-container.*(does not exist|removed)")


@pytest.fixture
def idle_proxy(console: Console, tmp_path: Path) -> Iterator[str]:
    """Real nginx in front of the server, dropping connections idle for 3 s (a proxy's read timeout)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).is_file():
        pytest.skip("nginx is not installed (make setup installs it)")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;
events {{}}
http {{
  access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};
  fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};
  server {{
    listen 127.0.0.1:{PROXY_PORT};
    location / {{
      proxy_pass http://127.0.0.1:{SERVER_PORT};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3s; proxy_send_timeout 3s;
    }}
  }}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    wait_for(lambda: _answers(f"http://127.0.0.1:{PROXY_PORT}/healthz"), timeout=20, what="nginx")
    yield f"ws://127.0.0.1:{PROXY_PORT}"
    proc.terminate()
    proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@in_thread
async def test_an_idle_session_outlives_the_proxys_idle_timeout(console: Console, kubectl: Kubectl,
                                                                idle_proxy: str) -> None:
    """Keepalive every 1 s (BIZCLOUD_SHELL_KEEPALIVE_S) against a proxy that drops 3 s of silence:
    the same scale as the 5-minute drops people see behind ingress proxies, in seconds."""
    pod = _pods(kubectl, console)[0]
    url = f"{idle_proxy}/api/v1/shell/kube/{console.namespace}/{pod}"
    # The client answers pings but sends none of its own: like a browser tab left alone.
    async with connect(url, additional_headers=_headers(console, "olga"), ping_interval=None) as ws:
        await ws.send(b"\x00echo ready\n")
        await _read_until(ws, r"^ready\s*$")
        await asyncio.sleep(12)  # four times the proxy's idle timeout, without a keystroke
        await ws.send(b"\x00hostname\n")
        await _read_until(ws, rf"^{re.escape(pod)}\s*$")


def test_bizcloud_shell_uses_the_same_bridge_from_a_terminal(console: Console, kubectl: Kubectl) -> None:
    pod = _pods(kubectl, console)[0]
    env = {**os.environ, "BIZCLOUD_TOKEN": console.tokens["olga"], "BIZCLOUD_SERVER_PORT": str(SERVER_PORT)}
    done = subprocess.run([sys.executable, "-m", "bizcloud", "shell", pod, "-n", console.namespace],
                          input="hostname\nexit 0\n", capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    output = done.stdout.replace("\r", "")
    assert re.search(rf"^{re.escape(pod)}\s*$", output, re.M), done.stdout + done.stderr
    assert "session ended (exit code 0)" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "bizcloud", "shell", pod, "-n", console.namespace],
                             input="", capture_output=True, text=True, timeout=60, check=False,
                             env={**env, "BIZCLOUD_TOKEN": console.tokens["vera"]})
    assert refused.returncode == 1 and "403" in refused.stderr
