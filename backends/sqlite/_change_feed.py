"""Which executions changed, read once per change and handed to their watchers only.

SQLite has no cross-process notification, but ``PRAGMA data_version`` on a
connection changes whenever another connection commits. While anyone watches,
one reader per backend checks it every ``interval`` seconds (and at once when
this backend commits), reads the ids of the executions changed since its last
read from ``execution_changes`` (one query, whoever wrote them), and wakes the
watchers of those executions only. A write costs O(watchers of the execution
it changed), not O(all watchers): with 500 idle watchers each change used to
make each of them query the history.

Self-contained on purpose: it owns its connection and does its own reads, so
it does not depend on how the backend schedules its storage calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable

__all__ = ["ChangeFeed", "Watcher"]


class Watcher:
    """One watcher's wake-up call.

    Call ``arm()`` *before* reading the state it guards, then ``wait()``: a
    change committed in between has already woken it, so none is missed.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def arm(self) -> None:
        self._changed.clear()

    def wake(self) -> None:
        self._changed.set()

    async def wait(self, timeout: float) -> None:
        """Until woken or ``timeout`` seconds pass, whichever is first."""
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives in the step
        # where the event fires (just after a write), and the cancelled watch kept running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()


class ChangeFeed:
    """The change reader of one backend, running while at least one execution is watched.

    :param connect: opens a connection to the database (the reader's own).
    :param interval: seconds between checks for other connections' commits.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float) -> None:
        self._connect = connect
        self._interval = interval
        self._watchers: dict[str, set[Watcher]] = {}
        self._count = 0
        self._committed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Tells the reader this backend committed: read now instead of at the next check.

        Safe to call from any thread (a backend may run its storage calls off the event loop).
        """
        if self._reader is None:
            return  # nobody watches; a reader starting later reads its position itself
        loop = self._reader.get_loop()
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._committed.set()
            return
        try:
            loop.call_soon_threadsafe(self._committed.set)
        except RuntimeError:  # the watchers' loop is closed: nobody is left to wake
            pass

    @contextlib.asynccontextmanager
    async def watching(self, execution_id: str) -> AsyncIterator[Watcher]:
        """While open, the yielded ``Watcher`` is woken after each change of ``execution_id``."""
        if self._reader is None:
            # Where the log stands is read now, before the caller reads the execution: whatever
            # commits after that point is read by the reader, so nothing falls in between.
            conn = self._connect()
            try:
                position = _position(conn)
            except BaseException:
                conn.close()
                raise
            self._reader = asyncio.get_running_loop().create_task(self._read(conn, position))
            # Not a ``finally`` in _read: a task cancelled before its first step never enters it.
            self._reader.add_done_callback(lambda _: conn.close())
        watcher = Watcher()
        self._watchers.setdefault(execution_id, set()).add(watcher)
        self._count += 1
        try:
            yield watcher
        finally:
            watchers = self._watchers[execution_id]
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[execution_id]
            self._count -= 1
            if not self._count:
                self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _read(self, conn: sqlite3.Connection, position: tuple[int, int]) -> None:
        data_version, seq = position
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._committed.wait()
            self._committed.clear()
            try:
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current == data_version:
                    continue
                data_version = current
                changed = conn.execute(
                    "SELECT seq, execution_id FROM execution_changes WHERE seq > ? ORDER BY seq", (seq,)
                ).fetchall()
            except sqlite3.Error:
                # Let every watcher read for itself; each reports what is wrong with the storage.
                self._wake(list(self._watchers))
                continue
            if not changed:
                continue
            if changed[0][0] != seq + 1:  # pruned past us: which executions changed is lost
                self._wake(list(self._watchers))
            else:
                self._wake({execution_id for _, execution_id in changed})
            seq = changed[-1][0]

    def _wake(self, execution_ids: Iterable[str]) -> None:
        for execution_id in execution_ids:
            for watcher in self._watchers.get(execution_id, ()):
                watcher.wake()


def _position(conn: sqlite3.Connection) -> tuple[int, int]:
    """``data_version`` and the newest change's number (0 when none)."""
    conn.execute("BEGIN")  # both from one snapshot
    try:
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM execution_changes").fetchone()[0]
    finally:
        conn.execute("COMMIT")
    return data_version, seq
