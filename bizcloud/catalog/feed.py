"""Wakes long-polling readers of the change stream when the catalog's revision moves.

The monitor commits changes from another process (often another host), so the API server has to
look. One poller per app reads ``latest_revision()`` and wakes every waiter whose revision it
passed; it runs only while at least one request is waiting, so a thousand waiting clients cost
one cheap query per look, and an idle server costs nothing. It looks at once when ``poke``d —
the monitor's wake-up datagram (``wakeup.py``) after each commit, or a write in this process —
and otherwise every ``interval`` seconds, the fallback for a lost or never-sent wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from bizcloud.catalog.errors import CatalogUnavailable

log = logging.getLogger(__name__)


class RevisionWatch:
    """``wait_beyond(rev)`` returns once the catalog's latest revision is above ``rev``."""

    def __init__(self, latest_revision: Callable[[], int], *, interval: float = 0.05) -> None:
        self._latest_revision = latest_revision
        self._interval = interval
        self._latest = -1
        self._waiters = 0
        self._closed = False
        self._changed = asyncio.Condition()
        self._nudged = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    @property
    def polling(self) -> bool:
        return self._poller is not None and not self._poller.done()

    async def wait_beyond(self, revision: int, *, timeout: float) -> bool:
        """True when the revision moved past ``revision`` within ``timeout`` s; else (or on close) False."""
        if self._closed or timeout <= 0:
            return False
        self._waiters += 1
        # Single-threaded: the poller checks ``_waiters`` and finishes in one step, so either it
        # sees this waiter or it is already done here and a new one starts.
        if not self.polling:
            self._poller = asyncio.create_task(self._poll(), name="catalog-revision-watch")
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._closed or self._latest > revision), timeout)
            return not self._closed
        except TimeoutError:
            return False
        finally:
            self._waiters -= 1
            if self._waiters == 0 and self._poller is not None:
                # The last waiter left: stop now, not after the poller's next read and interval
                # (a read queued for a busy thread pool could outlive the waiter by far). A new
                # waiter starts a new poller; this one is forgotten, so it cannot be mistaken
                # for a live one while its cancellation is still on its way.
                self._poller.cancel()
                self._poller = None

    def poke(self, revision: int | None = None) -> None:
        """Look at the database now instead of at the next interval (nothing to do while no one waits).

        ``revision`` is a hint from the sender: one this watch has already seen is ignored. The
        hint is never trusted as the latest revision — only the database is — so a stray poke
        costs one read and wakes no one early.
        """
        if revision is not None and revision <= self._latest:
            return
        self._nudged.set()

    async def close(self) -> None:
        """Wake every waiter (they answer with what they have) and stop polling."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll(self) -> None:
        while self._waiters > 0 and not self._closed:
            self._nudged.clear()  # a poke from here on means a commit this read may not see
            try:
                latest = await asyncio.to_thread(self._latest_revision)
            except CatalogUnavailable as e:
                log.warning("cannot read the catalog's revision: %s", e.one_line())
                latest = self._latest
            if latest != self._latest:
                async with self._changed:
                    self._latest = latest
                    self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self._interval)
