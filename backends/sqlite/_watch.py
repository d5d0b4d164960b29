"""Change notification across processes, for ``WatchExecution``.

SQLite has no cross-process notification, but ``PRAGMA data_version`` on a
connection changes whenever another connection commits. One poller per
backend reads it every ``interval`` seconds while anyone watches and wakes
every watcher; writes made through this backend wake them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable

__all__ = ["ChangeFeed"]


class ChangeFeed:
    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._event: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None
        self._watchers = 0

    def notify(self) -> None:
        """Wakes every waiter: something was committed."""
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscription(self):
        """While open, changes are polled for; yields a function giving the current wake-up event.

        Take the event *before* reading the state it guards, then wait on it:
        a change committed in between has already set it, so none is missed.
        """
        if self._event is None:
            self._event = asyncio.Event()
        self._watchers += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield lambda: self._event
        finally:
            self._watchers -= 1
            if not self._watchers and self._poller is not None:
                self._poller.cancel()
                self._poller = None

    async def _poll(self) -> None:
        conn = self._connect()
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(self._interval)
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current != last:
                    last = current
                    self.notify()
        finally:
            conn.close()

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
