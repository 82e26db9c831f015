"""Network namespaces for firewall tests: a "protected host" and a few "pods" on one bridge.

The host namespace holds a bridge (``br0``, 10.231.0.1/24 and fd00:bc::1/64) and a TCP listener on
the ports a test asks for; each pod namespace is plugged into the bridge with a veth whose host end
is created inside the host namespace, so nothing is ever added to the machine's own namespace.
Names are unique per lab (``bcfw-<6 hex>-h``, ``-a``, ``-b`` …) and everything is deleted on exit,
also when the test fails. Needs root, ``ip`` (iproute2) and the iptables tools.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

TOOLS = ("ip", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore")

# Accept on every port (dual stack), answer "ok" and close: enough to tell "connected" from "dropped".
_LISTENER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(64); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        try: conn.sendall(b"ok\n")
        finally: conn.close()
"""

_PROBE = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    s.settimeout(float(sys.argv[3]))
    sys.exit(0 if s.recv(3) == b"ok\n" else 3)
except OSError as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(1)
"""


def unavailable_reason() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and change their iptables"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install iproute2 iptables)"
    return None


def sh(*argv: str, stdin: str | None = None, netns: str | None = None) -> str:
    """Run a command (in ``netns`` when given); its stdout, or CalledProcessError with stderr."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    done = subprocess.run(full, input=stdin, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode:
        raise subprocess.CalledProcessError(done.returncode, full, done.stdout, done.stderr)
    return done.stdout


async def probe(netns: str, ip: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection from inside ``netns`` to ``ip:port`` completes (and reads "ok")."""
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, sys.executable, "-c", _PROBE, ip, str(port), str(timeout),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await process.wait() == 0


@dataclass
class Pod:
    netns: str
    ip: str
    ip6: str


@dataclass
class Lab:
    host: str                       # the protected host's namespace
    host_ip: str = "10.231.0.1"
    host_ip6: str = "fd00:bc::1"
    pods: dict[str, Pod] = field(default_factory=dict)

    def iptables(self, *argv: str, v6: bool = False) -> str:
        return sh("ip6tables" if v6 else "iptables", *argv, netns=self.host)

    def save(self, *, v6: bool = False) -> list[str]:
        """The host's filter table as rule lines, without comments and counters."""
        text = sh("ip6tables-save" if v6 else "iptables-save", "-t", "filter", netns=self.host)
        return [line for line in text.splitlines() if line.startswith(("-A", ":"))]

    async def reaches(self, pod: str, port: int, *, v6: bool = False, timeout: float = 0.5) -> bool:
        """Whether ``pod`` completes a TCP connection to the host's ``port`` (and reads "ok")."""
        return await probe(self.pods[pod].netns, self.host_ip6 if v6 else self.host_ip, port, timeout)

    async def reach_map(self, probes: Sequence[tuple[str, int]], *,
                        v6: bool = False) -> dict[tuple[str, int], bool]:
        """Several probes at once (a dropped one costs its timeout, so they run in parallel)."""
        results = await asyncio.gather(*(self.reaches(pod, port, v6=v6) for pod, port in probes))
        return dict(zip(probes, results, strict=True))


@contextmanager
def lab(*, pods: Sequence[str] = ("a", "b", "c"), ports: Sequence[int] = ()) -> Iterator[Lab]:
    """A protected host with ``pods`` on its bridge and a listener on ``ports``; all removed on exit."""
    prefix = f"bcfw-{uuid.uuid4().hex[:6]}"
    made: list[str] = []
    listener: subprocess.Popen[str] | None = None
    try:
        result = Lab(host=f"{prefix}-h")
        sh("ip", "netns", "add", result.host)
        made.append(result.host)
        host = ("ip", "-n", result.host)
        sh(*host, "link", "set", "lo", "up")
        sh(*host, "link", "add", "br0", "type", "bridge")
        sh(*host, "addr", "add", f"{result.host_ip}/24", "dev", "br0")
        sh(*host, "addr", "add", f"{result.host_ip6}/64", "dev", "br0", "nodad")
        sh(*host, "link", "set", "br0", "up")
        for index, name in enumerate(pods, start=10):
            pod = Pod(netns=f"{prefix}-{name}", ip=f"10.231.0.{index}", ip6=f"fd00:bc::{index:x}")
            sh("ip", "netns", "add", pod.netns)
            made.append(pod.netns)
            sh(*host, "link", "add", f"vh-{name}", "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
            sh(*host, "link", "set", f"vh-{name}", "master", "br0", "up")
            inside = ("ip", "-n", pod.netns)
            sh(*inside, "link", "set", "lo", "up")
            sh(*inside, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
            sh(*inside, "addr", "add", f"{pod.ip6}/64", "dev", "eth0", "nodad")
            sh(*inside, "link", "set", "eth0", "up")
            result.pods[name] = pod
        if ports:
            listener = subprocess.Popen(
                ["ip", "netns", "exec", result.host, sys.executable, "-c", _LISTENER, *map(str, ports)],
                stdout=subprocess.PIPE, text=True)
            assert listener.stdout is not None
            if listener.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the listener in {result.host} did not start")
        yield result
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for netns in reversed(made):
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
