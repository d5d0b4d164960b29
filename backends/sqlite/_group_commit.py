"""One transaction, one commit, for the execution writes of one event-loop step.

A server with many calls in flight runs several writes in each step of its
event loop (16 lifecycles in flight: 8 to 16 writes in most steps, counted).
Each in its own ``BEGIN IMMEDIATE`` ... ``COMMIT`` paid the lock calls, the
log pages and the commit once per write; the commits were the largest part
of a write's SQLite time. Here the first such write of a step opens the
transaction, the others join it, and the transaction commits once, at the
start of the next step, before any new request is read.

A write that fails takes back nothing of the others. Every refusal is decided
before the write changes anything (a compare-and-set that matches no row
changes none), so a failed write has nothing to take back, which the
connection's change count confirms. Only a write that fails after changing
rows (a storage error between two statements) cannot be told apart from the
writes before it without a savepoint: it takes the whole transaction back and
every write in it fails, as when the commit fails. A savepoint around each write
would avoid that for a case that does not happen, at two statements per write.

Exactness and durability per acknowledged write:

- Nobody sees a state that was not committed. Every call that ran while the
  transaction was open (it read or wrote inside it) waits for the commit
  before it answers, success or refusal alike; if the commit fails, all of
  them fail with the storage error, and none of their writes is in the file.
  Any other storage call (reads, other writes, the storage thread) commits
  the open transaction first (``end``), so it runs outside it.
- A write is acknowledged only after the ``COMMIT`` that contains it
  returned, with the same ``synchronous`` setting as a write of its own.
- Within the transaction the writes run one after another on one connection,
  each on the state the ones before it left: the same order and the same
  checks as separate transactions in that order.

Only when it pays: a write waits for the end of its step only if the last
step with writes had more than one. A lone writer (a CLI command, one call
in flight) commits each write at once, as before, without the two extra
event-loop steps of waiting. And only on the event loop: the storage thread
(a write that waits for another process's lock) keeps one transaction per write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["GroupCommit"]


class GroupCommit:
    """The open transaction of the current step, if any, on ``connection()``.

    :param connection: the backend's connection (used on the event loop only).
    :param committed: called after each successful commit (wake watchers, count toward a checkpoint).
    :param failed: called after a commit failed, its writes taken back (forget what they wrote).
    """

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        committed: Callable[[], None],
        *,
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        self._connection = connection
        self._committed = committed
        self._failed = failed
        self._waiters: list[asyncio.Future[None]] | None = None  # None: no transaction open
        # Whether the last step with writes had more than one: only then does a write wait for the
        # step to end. A lone caller (a CLI command, one call in flight) commits each write at once,
        # without the two extra event-loop steps of waiting.
        self._grouping_pays = True
        self._writes_this_step = 0
        self._first = False  # whether the write in progress opened the transaction
        self._changes_before = 0  # the connection's change count when the write in progress began

    @property
    def open(self) -> bool:
        return self._waiters is not None

    def wait(self) -> asyncio.Future[None]:
        """A future settled by the open transaction's commit: its result, or the commit's error.

        One per caller, so a caller that stops waiting (cancelled) cancels only its own.
        """
        assert self._waiters is not None, "no transaction is open"
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def begin(self) -> sqlite3.Connection:
        """Starts a write: it joins the step's transaction, or, the first of its step, opens it
        (``BEGIN IMMEDIATE``; meeting another process's lock, that raises ``SQLITE_BUSY`` with
        nothing opened). Then ``done`` or ``undo``.
        """
        conn = self._connection()
        self._count_write()
        self._first = self._waiters is None
        if self._first:
            conn.execute("BEGIN IMMEDIATE")
        self._changes_before = conn.total_changes
        return conn

    def done(self) -> None:
        """The write succeeded: kept in the step's transaction (or, for a lone writer, committed now)."""
        if not self._first:
            return
        if self._grouping_pays:
            waiters: list[asyncio.Future[None]] = []
            self._waiters = waiters
            asyncio.get_running_loop().call_soon(self._commit, waiters)
            return
        conn = self._connection()  # a transaction of its own
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._committed()

    def undo(self, error: BaseException) -> None:
        """The write failed with ``error``. Having changed nothing, it leaves the transaction as it was;
        else the transaction is taken back, and the step's writes before it with it (``_take_back``)."""
        conn = self._connection()
        if self._first:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        elif self._waiters is not None and (conn.total_changes != self._changes_before or not conn.in_transaction):
            # Changed rows, or SQLite rolled the whole transaction back itself (a full disk, an I/O error).
            self._take_back(self._waiters, error)

    def _take_back(self, waiters: list[asyncio.Future[None]], error: BaseException) -> None:
        """Rolls the open transaction back; every write in it fails (a storage error as itself)."""
        self._waiters = None
        conn = self._connection()
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            self._failed()
            reported = error if isinstance(error, sqlite3.Error) else _taken_back()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(reported)

    def _count_write(self) -> None:
        if not self._writes_this_step:
            # Runs at the start of the next step, after every task of this one.
            asyncio.get_running_loop().call_soon(self._step_ended)
        self._writes_this_step += 1

    def _step_ended(self) -> None:
        self._grouping_pays = self._writes_this_step > 1
        self._writes_this_step = 0

    def end(self) -> None:
        """Commits the open transaction now (before a call that must not run inside it)."""
        if self._waiters is not None:
            self._commit(self._waiters)

    def _commit(self, waiters: list[asyncio.Future[None]]) -> None:
        if self._waiters is not waiters:  # committed earlier by ``end``
            return
        self._waiters = None
        conn = self._connection()
        error: sqlite3.Error | None = None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as raised:
            error = raised
            self._failed()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            for waiter in waiters:
                if not waiter.done():
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
        if error is None:
            self._committed()


def _taken_back() -> GRPCError:
    return GRPCError(
        Status.UNAVAILABLE, "a write sharing this call's transaction failed, so nothing of it was written; try again"
    )
