"""The watch reader against the real API server: events, bookmarks, errors, dead connections.

``KubeClient.stream_watch`` reads its stream with ``bizcloud.kube.watchstream`` rather than httpx;
these tests hold it to what the informer relies on. A dead connection is made honestly: a TCP
relay of our own sits between the client and the API server (TLS passes through it untouched,
the server's certificate names 127.0.0.1) and stops relaying on demand, as a half-open
connection does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest

from bizcloud.cluster import lifecycle
from bizcloud.kube.client import KubeClient, Obj
from bizcloud.kube.config import KubeConfig, load_kubeconfig
from bizcloud.kube.errors import Gone, KubeApiError, KubeUnavailable, NotFound
from bizcloud.settings import Settings
from tests.e2e.conftest import eventually
from tests.e2e.test_informer import ns, pod

pytestmark = pytest.mark.e2e
__all__ = ["ns"]  # the namespace fixture, shared with the informer tests


def _name(event: Obj) -> str:
    return str(event["object"]["metadata"].get("name", ""))


async def test_added_modified_deleted_and_the_initial_bookmark(kube: KubeClient, ns: str) -> None:
    pods = f"/api/v1/namespaces/{ns}/pods"
    await kube.create(pods, pod("before", ns, service="demo-web"))
    stream = kube.stream_watch(pods, {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                      "allowWatchBookmarks": "true", "timeoutSeconds": 30}, read_timeout=45)
    seen: list[tuple[str, str]] = []
    try:
        async for event in stream:
            seen.append((event["type"], _name(event)))
            if event["type"] == "BOOKMARK":
                annotations = event["object"]["metadata"].get("annotations") or {}
                assert annotations.get("k8s.io/initial-events-end") == "true"
                assert int(event["object"]["metadata"]["resourceVersion"]) > 0
                await kube.create(pods, pod("during", ns, service="demo-web"))
                await kube.patch(f"{pods}/during", {"metadata": {"annotations": {"n": "1"}}})
                await kube.delete(f"{pods}/during", {"gracePeriodSeconds": 0})
            if seen[-1] == ("DELETED", "during"):
                break
    finally:
        await stream.aclose()
    assert seen[:2] == [("ADDED", "before"), ("BOOKMARK", "")]
    during = [t for t, n in seen[2:] if n == "during"]
    assert during[0] == "ADDED" and "MODIFIED" in during and during[-1] == "DELETED", seen


async def test_a_watch_the_server_ends_ends_the_iteration(kube: KubeClient, ns: str) -> None:
    started = time.monotonic()
    events = [e async for e in kube.stream_watch(f"/api/v1/namespaces/{ns}/pods", {"timeoutSeconds": 1},
                                                 read_timeout=10)]
    assert events == []
    assert time.monotonic() - started < 5


async def test_a_too_old_resource_version_raises_gone(kube: KubeClient, ns: str) -> None:
    """The watch cache answers a resourceVersion older than its history with an ERROR event (410)."""
    with pytest.raises(Gone, match="too old resource version"):
        async for _ in kube.stream_watch(f"/api/v1/namespaces/{ns}/pods",
                                         {"resourceVersion": "1", "timeoutSeconds": 5}, read_timeout=10):
            pass


HTTP_ERRORS = {
    "an unknown resource": ("/api/v1/namespaces/default/nonsense", {}, NotFound, 404),
    "a bad label selector": ("/api/v1/pods", {"labelSelector": "a b c"}, KubeApiError, 400),
    # an ERROR event inside a 200 stream whose Status carries no code: raised as a 500
    "a bad resourceVersion": ("/api/v1/pods", {"resourceVersion": "abc"}, KubeApiError, 500),
}


@pytest.mark.parametrize(("path", "params", "kind", "status"), HTTP_ERRORS.values(), ids=HTTP_ERRORS.keys())
async def test_an_error_status_raises_the_matching_api_error(
        kube: KubeClient, path: str, params: dict[str, str], kind: type[KubeApiError], status: int) -> None:
    with pytest.raises(kind) as caught:
        async for _ in kube.stream_watch(path, {**params, "timeoutSeconds": 5}, read_timeout=10):
            pass
    assert caught.value.status == status
    assert caught.value.api_message, "the Status body's message is kept"


async def test_a_bearer_token_is_sent(kube: KubeClient, ns: str, real_cluster: Settings) -> None:
    """A service account's token, without client certificates: the server names the account."""
    answer = await kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts/default/token",
                               {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": 600}})
    admin = load_kubeconfig(lifecycle.kubeconfig_path(real_cluster))
    config = KubeConfig(server=admin.server, ca_pem=admin.ca_pem, token=answer["status"]["token"])
    async with KubeClient.from_config(config) as client:
        with pytest.raises(KubeApiError, match=f"system:serviceaccount:{ns}:default") as caught:
            async for _ in client.stream_watch("/api/v1/pods", {"timeoutSeconds": 5}, read_timeout=10):
                pass
    assert caught.value.status == 403


async def test_a_refused_connection_is_unavailable(real_cluster: Settings) -> None:
    admin = load_kubeconfig(lifecycle.kubeconfig_path(real_cluster))
    with socket_closed_port() as port:
        config = dataclasses.replace(admin, server=f"https://127.0.0.1:{port}")
        async with KubeClient.from_config(config) as client:
            with pytest.raises(KubeUnavailable, match="cannot connect"):
                async for _ in client.stream_watch("/api/v1/pods", read_timeout=5):
                    pass


# --- through a relay that can go silent --------------------------------------------------------------

class Relay:
    """A TCP relay to the API server that can stop relaying (a half-open connection, seen from us)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.frozen = asyncio.Event()
        self.closed_by_client = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                       from_client: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if self.frozen.is_set():
                        continue                  # swallowed: the other side hears nothing
                    writer.write(data)
                    await writer.drain()
            finally:                              # EOF or a reset: the side we read from closed
                if from_client:
                    self.closed_by_client.set()

        with contextlib.suppress(OSError):
            await asyncio.gather(pump(client_reader, up_writer, from_client=True),
                                 pump(up_reader, client_writer, from_client=False))
        for writer in (client_writer, up_writer):
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def relayed(real_cluster: Settings) -> AsyncIterator[tuple[Relay, KubeClient]]:
    admin = load_kubeconfig(lifecycle.kubeconfig_path(real_cluster))
    url = urlsplit(admin.server)
    relay = Relay((url.hostname or "127.0.0.1", url.port or 443))
    port = await relay.start()
    try:
        config = dataclasses.replace(admin, server=f"https://127.0.0.1:{port}")
        async with KubeClient.from_config(config) as client:
            yield relay, client
    finally:
        await relay.stop()


async def test_a_silent_connection_ends_the_watch_within_the_read_timeout(
        real_cluster: Settings, ns: str) -> None:
    async with relayed(real_cluster) as (relay, client):
        stream = client.stream_watch(f"/api/v1/namespaces/{ns}/pods",
                                     {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                      "allowWatchBookmarks": "true", "timeoutSeconds": 60}, read_timeout=1.5)
        first = await anext(stream)
        assert first["type"] == "BOOKMARK", "the namespace is empty: the initial events end at once"
        relay.frozen.set()
        started = time.monotonic()
        with pytest.raises(KubeUnavailable, match=r"nothing read for 1\.5 s"):
            await anext(stream)
        assert 1.4 < time.monotonic() - started < 4
        await eventually(relay.closed_by_client.is_set, timeout=5, what="the reader to close its connection")


async def test_cancelling_a_watch_closes_its_connection(real_cluster: Settings, ns: str) -> None:
    async with relayed(real_cluster) as (relay, client):
        received = asyncio.Event()

        async def consume() -> None:
            async for _ in client.stream_watch(f"/api/v1/namespaces/{ns}/pods",
                                               {"allowWatchBookmarks": "true", "timeoutSeconds": 60,
                                                "sendInitialEvents": "true",
                                                "resourceVersionMatch": "NotOlderThan"}, read_timeout=90):
                received.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(received.wait(), 10)
        assert not relay.closed_by_client.is_set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await eventually(relay.closed_by_client.is_set, timeout=5,
                         what="the cancelled watch to close its connection")


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port
