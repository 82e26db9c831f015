"""What the SDK's watchers share: a kazoo client of their own (or a shared one), start and stop.

Standard library and kazoo only. A watcher made with ``client=`` shares that client and leaves
its lifecycle to the caller; otherwise it connects to ``hosts`` on ``start`` and closes on
``stop``. Watch callbacks return False after ``stop``, which makes kazoo drop the watch.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from kazoo.client import KazooClient, KazooState


def forget_zxid_when_suspended(client: KazooClient) -> None:
    """Let ``client`` reconnect to a ZooKeeper that restarted on empty (or older) data.

    A server refuses a client that has seen a newer transaction id than its own ("client must
    try another server"), so after a restart on wiped data every client would retry forever.
    Forgetting the last zxid once the connection drops lets the client in; the registry's
    reconcile and the watches' fresh reads then bring everyone back to the server's truth.
    """
    def listener(state: str) -> None:
        if state == KazooState.SUSPENDED:
            client.last_zxid = 0

    client.add_listener(listener)


class Watching:
    def __init__(self, hosts: str, client: KazooClient | None) -> None:
        self._own_client = client is None
        self._client = client or KazooClient(hosts=hosts, timeout=10.0)
        if self._own_client:
            forget_zxid_when_suspended(self._client)
        self._stopped = False

    def _connect(self, timeout: float) -> None:
        if self._own_client:
            self._client.start(timeout=timeout)

    def start(self, timeout: float = 15.0) -> Self:
        self._connect(timeout)
        return self

    def stop(self) -> None:
        self._stopped = True
        if self._own_client:
            self._client.stop()
            self._client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
