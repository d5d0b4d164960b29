"""A second, read-only connection, so a read need not queue behind a write waiting for a lock.

The backend's one connection is used by one thread at a time: while a write
waits on the storage thread for another process's write lock (up to the busy
timeout), every later call queues behind it (``_thread``). A read does not
need that lock: in WAL mode a reader never waits for a writer. So while the
storage thread is busy, reads run at once on this connection, on the caller's
event loop; while it is idle, they stay on the one connection (the fast path).

Consistent as the one connection was: a read starts a new WAL snapshot, which
holds every commit made before it started, so it sees every acknowledged
write (a write is acknowledged after its ``COMMIT``). It may not see a write
still queued or waiting: that write is not acknowledged, so the read may be
ordered before it. ``PRAGMA query_only`` refuses any write at its first
statement (``SQLITE_READONLY``); a read that turns out to need one (a lease
expiry to record) runs again on the storage thread, as every call did before.

A reader in a transaction keeps the log from being checkpointed past its
snapshot, so no transaction is left open after a call. It writes nothing, so
the change feed (``PRAGMA data_version`` on its own connection) is woken by
writes only. Opened at its first use, so a backend whose thread never waits
costs no second connection; closed with the backend. It has its own page
cache (SQLite's default, up to 2 MB).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from grpclib import GRPCError

__all__ = ["ReadConnection", "reading"]

T = TypeVar("T")

# Per thread (and per task): the storage thread, running a write meanwhile, never sees it.
_READING: ContextVar[sqlite3.Connection | None] = ContextVar("stigmer_sqlite_reading", default=None)

# The read connection while a call runs on it in this thread (``ReadConnection.run``), else ``None``.
# Looked up at every statement of every call: the bound method, without a Python frame around it.
reading = _READING.get


class ReadConnection:
    """The read-only connection of one backend.

    :param connect: opens a connection to the database, as the backend's own.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.answers = 0  # calls that returned on it: which path answered, for tests and counters

    def open(self) -> bool:
        """Whether it can be used now, opening it at its first use.

        ``False`` once closed, or when it cannot be opened: the call then
        runs on the storage thread, which reports what is wrong.
        """
        if self._conn is None and not self._closed:
            try:
                conn = self._connect()
            except (sqlite3.Error, OSError, GRPCError):
                return False
            try:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("PRAGMA busy_timeout = 0")  # on the event loop: a lock is left to the thread
            except sqlite3.Error:
                conn.close()
                return False
            self._conn = conn
        return self._conn is not None

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` with ``reading()`` giving this connection; call after ``open()`` answered ``True``."""
        conn = self._conn
        assert conn is not None  # opened
        token = _READING.set(conn)
        try:
            result = call()
        finally:
            _READING.reset(token)
            if conn.in_transaction:  # never left holding a snapshot (see the module's docstring)
                conn.execute("ROLLBACK")
        self.answers += 1
        return result

    def close(self) -> None:
        """Closes it for good: later calls run on the storage thread."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
