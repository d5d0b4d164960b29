"""Copying the write-ahead log into the database file, mostly off the event loop.

A checkpoint copies the log's pages into the database file, with two fsyncs:
the log's before (with ``synchronous = NORMAL`` nothing else ever syncs it, so
this one writes out every page appended since the last) and the file's after.
Run on the event loop every ``every`` commits, that froze the whole server: 16
lifecycles in flight, 16 checkpoints in 15 s held the loop 980 ms (6.5% of the
time, one of them 345 ms) for 78 ms of CPU; the rest was waiting on the disk.

So a checkpoint runs in two parts. The bulk, a passive checkpoint (it takes no
lock writers need), runs on a thread of its own with a connection of its own,
and the disk waits there while the loop goes on writing. Then, at the next
commit, the owner checkpoints again on its own connection, inline: this copies
and syncs only what was written meanwhile, and leaves nothing in the log, so the
next write starts it again from its beginning (a passive checkpoint racing the
writers alone would rarely catch up with them, and the log would grow). The
inline part is the whole checkpoint as it was before, so whatever the thread
could not do (it met a lock, its connection would not open) is done there.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable

__all__ = ["Checkpointer"]


class Checkpointer:
    """Decides when to checkpoint and runs the bulk of it on its thread.

    :param connect: opens the thread's own connection (called on the thread).
    :param catch_up: the owner's checkpoint, run inline by ``committed`` after a pass of the thread.
    :param every: commits between checkpoints.
    :param name: the thread's name.
    """

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], catch_up: Callable[[], None], *, every: int, name: str
    ) -> None:
        self._connect = connect
        self._catch_up = catch_up
        self.every = every
        self._name = name
        self.commits = 0  # since the last checkpoint that left the log empty
        self._requested = False  # a pass was asked for and its catch-up has not run yet
        self._passed = threading.Event()  # the thread finished the pass asked for
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.passes = 0  # passes the thread completed
        self.last_pass: tuple[int, int, int] | None = None  # its (busy, log frames, frames copied)

    def committed(self) -> None:
        """After each commit, on the thread that committed."""
        self.commits += 1
        if self._requested:
            if self._passed.is_set():
                self._requested = False
                self._passed.clear()
                self.commits = 0
                self._catch_up()
        elif self.commits >= self.every:
            self._requested = True
            self._start()
            self._wanted.set()

    def close(self) -> None:
        """Ends the thread, after the pass it is running; the owner then checkpoints for the last time."""
        self._stopping = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()

    def _work(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                # Any failure is left to the owner's inline checkpoint, which does the whole of it then.
                with contextlib.suppress(Exception):
                    if conn is None:
                        conn = self._connect()
                        conn.execute("PRAGMA busy_timeout = 0")  # a checkpoint never waits for anyone
                    busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.last_pass = (busy, log, copied)
                    self.passes += 1
                self._passed.set()
        finally:
            if conn is not None:
                conn.close()
