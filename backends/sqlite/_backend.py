"""The SQLite backend: every RPC of ``BackendService`` on one database file.

A thin adapter: requests are validated and decided by ``stigmer_backend.backends.rules``;
this module only loads rows, hands them to the rules and writes the result.
Every read-modify-write runs in one ``BEGIN IMMEDIATE`` transaction, so
concurrent processes serialise on SQLite's write lock (waiting up to the busy
timeout, never failing with "database is locked" under normal contention)
and a compare-and-set is checked against the committed row. The execution
writes of one event-loop step (a server with many calls in flight) share
that transaction, each in a savepoint, and answer once it has committed
(``_group_commit``).

No call waits for a lock on the caller's event loop: a call is tried there
with a busy timeout of 0 and, if another process holds the lock, run again on
the backend's storage thread, which waits (``_thread.StorageThread``), so a
server keeps answering while one write waits. Reads do not queue behind it:
while that thread is busy they run on a second, read-only connection
(``_read_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..base import Backend
from ..home import stigmer_home
from ..private_files import check_file
from ..rules import agent_instances, errors, execution_context, executions, ids, paging, validation
from ..rules.backend_info import backend_info
from . import _rows
from ._change_feed import ChangeFeed, Watcher
from ._checkpointer import Checkpointer
from ._errors import storage_error
from ._group_commit import GroupCommit
from ._list_query import page_query
from ._read_connection import ReadConnection, reading
from ._recent import RecentRows
from ._schema import RUNNING_PHASE, STATUS_COLUMN_NAMES, migrate, refuse_newer
from ._thread import StorageThread

if TYPE_CHECKING:  # imported when a secret is first used: cryptography is most of a CLI command's start-up
    from ..encryption import KeyRotation, KeyStatus, MasterKey, MasterKeySource
    from ._secrets import SecretVault

__all__ = ["SqliteBackend", "default_database_path"]

P = ParamSpec("P")
R = TypeVar("R")

_EXECUTION_SELECT = f"SELECT {', '.join(_rows.EXECUTION_COLUMNS)} FROM executions"
_NEWEST_EXECUTION = "SELECT max(id) FROM executions"
_INSERT_INTO_EXECUTIONS = f"INSERT INTO executions ({', '.join(_rows.EXECUTION_COLUMNS)})"
_EXECUTION_VALUES = ", ".join("?" * len(_rows.EXECUTION_COLUMNS))
_INSERT_EXECUTION = f"{_INSERT_INTO_EXECUTIONS} VALUES ({_EXECUTION_VALUES})"
# A create built before the lock, inserted only if what it was built on still holds, each an
# indexed look-up: its request_id is new, its agent instance is the version it snapshots, and
# no execution has an identifier at or after its own. One statement where the checks one by
# one were four; when one fails nothing is inserted, and the checks run one by one to tell which.
_INSERT_IF_CURRENT = (
    f"{_INSERT_INTO_EXECUTIONS} SELECT {_EXECUTION_VALUES} "
    "WHERE NOT EXISTS (SELECT 1 FROM executions WHERE request_id = ?) "
    "AND EXISTS (SELECT 1 FROM agent_instances WHERE id = ? AND name = ? AND version = ?) "
    "AND coalesce((SELECT max(id) FROM executions), '') < ?"
)
_AGENT_SELECT = (
    "SELECT a.id, a.name, a.version, v.agent_instance FROM agent_instances a "
    "JOIN agent_instance_versions v ON v.agent_instance_id = a.id AND v.version = a.version"
)


def default_database_path() -> Path:
    """``$STIGMER_HOME/local.db`` (``~/.stigmer/local.db`` by default)."""
    return stigmer_home() / "local.db"


def _now() -> datetime:
    return datetime.now(UTC)


def _reported(backend: SqliteBackend, error: Exception) -> GRPCError | None:
    """The documented ``GRPCError`` for an exception of a storage call, or ``None`` to let it through."""
    if isinstance(error, sqlite3.Error):
        return storage_error(error, str(backend.path))
    if isinstance(error, (ValueError, TypeError, KeyError)):  # a stored row that our own writes cannot have produced
        return GRPCError(Status.INTERNAL, f"{backend.path} holds a row Stigmer cannot read (the database was altered)")
    return None


@functools.cache  # a metadata lookup scans installed distributions; the answer cannot change
def _storage_boundary(
    method: Callable[Concatenate[SqliteBackend, P], R],
) -> Callable[Concatenate[SqliteBackend, P], Coroutine[Any, Any, R]]:
    """A coroutine method running the synchronous ``method`` on the storage thread.

    Runs outside the step's group transaction (committed first, see ``_group_commit``).
    Reports sqlite3 errors as the documented ``GRPCError``.
    """

    @functools.wraps(method)
    async def wrapper(self: SqliteBackend, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            self._group.end()
            return await self._storage.run(functools.partial(method, self, *args, **kwargs))
        except Exception as error:
            reported = _reported(self, error)
            if reported is None:
                raise
            raise reported from None

    return wrapper


@dataclasses.dataclass(frozen=True)
class _Refused:
    """A group-committed call's exception, raised once the transaction it ran in has committed."""

    error: Exception


def _group_committed(
    method: Callable[Concatenate[SqliteBackend, P], R],
) -> Callable[Concatenate[SqliteBackend, P], Coroutine[Any, Any, R]]:
    """Like ``_storage_boundary``, for the execution writes a server runs many of at once.

    On the event loop, ``method``'s writes join the step's transaction (``_group_commit``):
    the call answers, result or refusal, once that transaction has committed.
    """

    @functools.wraps(method)
    async def wrapper(self: SqliteBackend, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            outcome, commit = await self._storage.run(self._grouped, functools.partial(method, self, *args, **kwargs))
            if commit is not None:
                await commit
            if isinstance(outcome, _Refused):
                raise outcome.error
        except Exception as error:
            reported = _reported(self, error)
            if reported is None:
                raise
            raise reported from None
        result: R = outcome
        return result

    return wrapper


# What a call on the read connection leaves to the storage thread, which runs it again and reports it:
# a write it needed (refused by query_only), a lock, a row our own writes cannot have produced.
_LEFT_TO_THE_THREAD = (sqlite3.Error, ValueError, TypeError, KeyError)


def _read_boundary(
    method: Callable[Concatenate[SqliteBackend, P], R],
) -> Callable[Concatenate[SqliteBackend, P], Coroutine[Any, Any, R]]:
    """``_storage_boundary`` for a method that reads, and writes only when it must (a lease expiry).

    While the storage thread is busy (a write waiting for a lock), it runs at once on the read
    connection (``_read_connection``) instead of queueing behind; a call that must write is run
    again on the thread. While the thread is idle, as ``_storage_boundary``.
    """
    queued: Callable[Concatenate[SqliteBackend, P], Coroutine[Any, Any, R]] = _storage_boundary(method)

    @functools.wraps(method)
    async def wrapper(self: SqliteBackend, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._storage.queued and self._reads.open():
            with contextlib.suppress(*_LEFT_TO_THE_THREAD):
                return self._reads.run(functools.partial(method, self, *args, **kwargs))
        return await queued(self, *args, **kwargs)

    return wrapper


class SqliteBackend(Backend):
    """``BackendService`` on a local SQLite file.

    :param path: the database file; default ``$STIGMER_HOME/local.db``. Its
        directory must exist. Created (0600) and migrated on first use.
    :param busy_timeout: seconds a write waits for another process's write
        lock before failing with ``UNAVAILABLE``.
    :param poll_interval: seconds between checks for other processes' writes
        while an execution is watched.
    :param master_key: where the master key that seals secrets is found;
        default ``MasterKeySource()`` (``STIGMER_MASTER_KEY``, the OS
        keychain, ``$STIGMER_HOME/master.key``). Looked up at the first
        secret operation only: everything else works without a key.

    Raises ``GRPCError`` (``INTERNAL``) naming the file if it is not a usable
    Stigmer database: not SQLite, damaged, read-only, or from a newer schema.

    It keeps its secrets' master key itself, so it is a ``MasterKeyAdmin``
    (``stigmer secret status`` and ``rotate-key``) by its methods: the protocol
    is checked at run time, and importing it here would load cryptography at
    every CLI command's start-up.
    """

    kind = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 30.0,
        poll_interval: float = 0.02,
        master_key: MasterKeySource | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_database_path()
        self._master_key = master_key
        self._secret_vault: SecretVault | None = None
        self._busy_timeout = busy_timeout
        self._checkpoints = Checkpointer(
            self._connect,
            lambda: self._checkpoint(self._db),
            every=_CHECKPOINT_EVERY,
            name=f"stigmer-checkpoint {self.path.name}",
        )
        self._waits = False  # whether the connection waits for locks now: on the storage thread
        self._grouping = False  # whether the call running now may join the step's group transaction
        self._recent = RecentRows()
        self._group = GroupCommit(lambda: self._db, self._committed, failed=self._recent.clear)
        self._conn: sqlite3.Connection | None = None
        self._storage = StorageThread(
            f"stigmer-sqlite {self.path.name}",
            would_block=_is_busy,
            enter=lambda: self._set_busy_timeout(self._busy_timeout),
            leave=lambda: self._set_busy_timeout(0),
        )
        try:
            self._conn = self._connect()
            migrate(self._conn, str(self.path))
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")  # it checkpoints itself, see _checkpoint
            self._set_busy_timeout(0)  # calls try without waiting first; the storage thread waits
        except sqlite3.Error as error:
            self._close_connection()
            self._storage.stop()
            raise storage_error(error, str(self.path)) from None
        except OSError as error:  # the file cannot be created: no such directory, no permission
            self._close_connection()
            self._storage.stop()
            raise GRPCError(Status.INTERNAL, f"cannot open {self.path}: {error.strerror}") from None
        except BaseException:
            self._close_connection()
            self._storage.stop()
            raise
        self._changes = ChangeFeed(self._connect, poll_interval)
        self._reads = ReadConnection(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            # Private from the first byte (SQLite gives -wal and -shm the same mode), and ours: O_EXCL
            # and O_NOFOLLOW, so a file or link planted meanwhile is found by the checks below instead.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY, 0o600))
        if not os.access(self.path, os.W_OK):
            # SQLite would open it read-only and fail only at the first write.
            raise GRPCError(Status.INTERNAL, f"{self.path} is read-only; Stigmer needs to write to it")
        check_file(self.path, "the database")  # not another user's, not a link
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            # Before anything that writes (switching to WAL does): a newer database is left untouched.
            refuse_newer(conn, str(self.path))
            mode = _enable_wal(conn, self._busy_timeout)
            if mode != "wal":
                raise GRPCError(Status.INTERNAL, f"{self.path} cannot use write-ahead logging (journal mode {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_busy_timeout(self, seconds: float) -> None:
        """How long the connection waits for another writer's lock: 0 on the event loop, see ``_thread``."""
        self._waits = seconds > 0
        if self._conn is not None:
            self._conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def _close_connection(self) -> None:
        if self._conn is not None:
            # A short-lived process (a CLI command) writes far fewer than _CHECKPOINT_EVERY times; when
            # another process keeps the file open, no close is the last one, and nothing else would copy
            # its writes out of the log: left to them, the log would grow with every command.
            self._checkpoints.close()
            if self._checkpoints.commits:
                self._checkpoint(self._conn)
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        if self._conn is not None:
            self._changes.close()
            self._group.end()
            self._reads.close()  # first: the one connection, closing last, checkpoints on its thread
            await self._storage.run_on_thread(self._close_connection)  # after any call still running
            self._storage.stop()

    @property
    def _vault(self) -> SecretVault:
        if self._secret_vault is None:
            from ..encryption import MasterKeySource
            from ._secrets import SecretVault

            source = self._master_key if self._master_key is not None else MasterKeySource()
            self._secret_vault = SecretVault(self.path, source)
        return self._secret_vault

    @property
    def _db(self) -> sqlite3.Connection:
        read_only = reading()
        if read_only is not None:  # this call runs on the read connection (see _read_boundary)
            return read_only
        if self._conn is None:
            raise GRPCError(Status.UNAVAILABLE, f"the backend for {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: all of it commits, or none.

        On the event loop the busy timeout is 0: a lock held by another process fails ``BEGIN`` at
        once and the call goes to the storage thread, where SQLite's busy handler waits for it,
        sleeping 1, 2, 5, 10... ms between tries, as raw sqlite3 does. A waiter that sleeps that
        long leaves the lock to one process for many transactions in a row, at its one-process
        speed. Retrying every 50 us to 2 ms instead found the lock in the holder's short gaps
        between its own transactions: the lock changed hands at most lifecycles, each time after
        a wait that left it free, and each loser ran its call again on its thread, taking CPU
        from the holder (``benchmarks/processes.py --counters``, lock timeline).
        """
        if self._grouping and not self._waits:  # an execution write on the event loop
            conn = self._group.begin()
            try:
                yield conn
            except BaseException as error:
                self._group.undo(error)
                raise
            self._group.done()
            return
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._committed()

    def _grouped(self, call: Callable[[], R]) -> tuple[R | _Refused, asyncio.Future[None] | None]:
        """``call()`` with its writes in the step's group transaction when on the event loop.

        Returns its result (or its exception, as ``_Refused``) and the commit to wait for before
        answering, if it ran while the group transaction was open; without one, an exception is
        raised at once (a ``SQLITE_BUSY`` from opening the transaction sends the call to the thread).
        """
        self._grouping = True
        try:
            result = call()
        except Exception as error:
            if self._waits or not self._group.open:
                raise
            return _Refused(error), self._group.wait()
        finally:
            self._grouping = False
        return result, None if self._waits or not self._group.open else self._group.wait()

    def _committed(self) -> None:
        """After each commit: watchers are told, and the log is copied out every ``_CHECKPOINT_EVERY`` commits."""
        self._changes.notify()  # thread-safe: the storage thread commits too
        self._checkpoints.committed()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copies the log into the database file; when the log is long, has the next write start it again.

        SQLite's automatic checkpoint (a passive one, after every commit once the log holds 1,000
        pages) lets the log start again from its beginning only after it copied all of it with no
        reader in it. With several processes reading and writing one file there nearly always is
        a reader: in a 4-process benchmark run the log grew to 70-110 MB and every commit ran a
        checkpoint, two fsyncs included, which was most of what four processes lost against one.
        So the connection checkpoints itself every ``_CHECKPOINT_EVERY`` commits: passive, as
        SQLite's (it takes no lock writers need), and, once the log holds ``_LONG_LOG`` pages, in
        ``RESTART`` mode without waiting, which holds the write lock while it copies but lets the
        next write start the log again when no reader is in it (often: reads are short). Passive
        alone let the log reach 260-290 MB in the same run; ``RESTART`` every time kept it under
        25 MB but 4 processes then reached 0.86 of one process's rate, against 0.93 this way (log
        75-95 MB; ``benchmarks/processes.py``). The write has committed whatever happens here: a
        checkpoint that meets a reader or another checkpoint, or fails, is left to the next one.
        """
        if self._waits:  # on the storage thread: a checkpoint never waits for readers
            conn.execute("PRAGMA busy_timeout = 0")
        try:
            with contextlib.suppress(sqlite3.Error):
                _, log_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if log_pages >= _LONG_LOG:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            if self._waits:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every statement in it sees the same committed state."""
        conn = self._db
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- executions: loading, lease expiry, storing -------------------------------------------

    def _execution_row(self, conn: sqlite3.Connection, execution_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(f"{_EXECUTION_SELECT} WHERE id = ?", (execution_id,)).fetchone()
        if row is None:
            raise errors.not_found(f"execution {execution_id!r}")
        return row

    def _store_status(self, conn: sqlite3.Connection, before: pb.Execution, after: pb.Execution) -> None:
        self._recent.forget_execution(after.id)
        if not _compare_and_set(conn, _status_write(before, after)):
            # Impossible for a row read in this write transaction; refuse to guess if it happens.
            raise GRPCError(Status.INTERNAL, f"execution {after.id} changed during its own write transaction")

    def _settled(self, conn: sqlite3.Connection, execution: pb.Execution, now: datetime) -> pb.Execution:
        """``execution`` after its lease expiry, written; call inside a write transaction."""
        expired = executions.expire_lease(execution, now)
        if expired is None:
            return execution
        self._store_status(conn, execution, expired)
        return expired

    def _read_execution(self, execution_id: str, now: datetime) -> pb.Execution:
        execution = _rows.execution_from_row(self._execution_row(self._db, execution_id))
        if executions.lease_expired(execution, now):
            with self._write() as conn:
                execution = self._settled(conn, _rows.execution_from_row(self._execution_row(conn, execution_id)), now)
        return execution

    def _expire_due_leases(self, now: datetime) -> None:
        due = self._db.execute(
            # The partial index holds only RUNNING rows, so this costs the same with a million finished ones.
            "SELECT id FROM executions INDEXED BY executions_running_leases "
            f"WHERE phase = {RUNNING_PHASE} AND lease_expire_us <= ?",
            (_rows.micros(now),),
        ).fetchall()
        if due:
            with self._write() as conn:
                for (execution_id,) in due:
                    self._settled(conn, _rows.execution_from_row(self._execution_row(conn, execution_id)), now)

    def _change(self, execution_id: str, decide: Callable[[pb.Execution, datetime], pb.Execution]) -> pb.Execution:
        """Applies ``decide(current) -> new`` as one compare-and-set; a lease expiry found on the way is kept.

        Decided before the write lock is taken, and written only if the row is still the version
        decided on: the Python work (rows to messages, the rules) stays outside the lock other
        processes queue for. Deciding inside held the lock for half of a lifecycle's time (raw
        sqlite3 doing the same SQL: a third), which is what capped several processes on one file.
        A lost race decides again, on the row that won. The row decided on is the one this
        backend last wrote when it is kept (``_recent``), else read; a refusal decided on a kept
        row is decided again on the stored one.
        """
        while True:
            now = _now()
            kept_row = self._recent.execution(execution_id)
            kept = kept_row is not None
            row = kept_row if kept_row is not None else self._execution_row(self._db, execution_id)
            before = _rows.execution_from_row(row)
            current = executions.expire_lease(before, now) or before
            refusal: GRPCError | None = None
            stored = _stored_status(row)
            writes = []
            if current is not before:
                writes.append(_status_write(before, current, stored))
                stored = writes[0].status
            try:
                after = decide(current, now)
            except GRPCError as error:
                if kept:
                    self._recent.forget_execution(execution_id)
                    continue
                refusal = error  # raised after the commit, which keeps a lease expiry
            else:
                writes.append(_status_write(current, after, stored))
            try:
                if writes:
                    with self._write() as conn:
                        for write in writes:
                            if not _compare_and_set(conn, write):
                                raise _RowChanged
            except _RowChanged:
                self._recent.forget_execution(execution_id)
                continue
            if writes:
                last = writes[-1]
                self._recent.remember_status(row, last.version, last.update_us, last.status)
            if refusal is not None:
                raise refusal
            return after

    # -- RPCs ---------------------------------------------------------------------------------

    async def get_backend_info(self, message: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        return backend_info(self.kind, [pb.Capability.DURABLE_STORAGE, pb.Capability.SECRETS])

    @_group_committed
    def create_execution(self, message: pb.CreateExecutionRequest) -> pb.CreateExecutionResponse:
        validation.validate_create_execution(message)
        assert message.agent_instance is not None  # validated
        now = _now()
        # Built before the write lock is taken (see _change): in the transaction only the checks
        # that decide (``_INSERT_IF_CURRENT``), and the identifier if another create took it.
        # Built on the agent row and newest id of this backend's last create when it has them
        # (``_recent``): the checks in the transaction find whether they are still current.
        key = _agent_key(message.agent_instance)
        agent = self._recent.agent(key)
        if agent is None:
            agent = _find_agent(self._db, message.agent_instance)
        insert_if_current = None  # without an agent row, decided in the transaction: a known request_id still answers
        if agent is not None:
            newest = self._recent.newest_execution
            if newest is None:
                newest = self._db.execute(_NEWEST_EXECUTION).fetchone()[0]
            execution, row = self._new_execution(message, agent, newest, now)
            checks = (message.request_id, agent["id"], agent["name"], agent["version"], execution.id)
            insert_if_current = (*row, *checks)
        with self._write() as conn:
            if insert_if_current is not None and conn.execute(_INSERT_IF_CURRENT, insert_if_current).rowcount:
                assert agent is not None  # insert_if_current is built on one
                current_agent = agent  # every check held: the one statement did it all
            else:
                existing_row = conn.execute(
                    f"{_EXECUTION_SELECT} WHERE request_id = ?", (message.request_id,)
                ).fetchone()
                if existing_row is not None:
                    existing = _rows.execution_from_row(existing_row)
                    # Refused before the expiry is written: a refusal writes nothing (see _group_commit).
                    executions.require_retry_of(existing, message)
                    return pb.CreateExecutionResponse(execution=self._settled(conn, existing, now), created=False)
                current_agent = self._agent_row(conn, message.agent_instance)
                newest = conn.execute(_NEWEST_EXECUTION).fetchone()[0]
                if agent is None or tuple(current_agent) != tuple(agent):
                    execution, row = self._new_execution(message, current_agent, newest, now)
                elif newest is not None and newest >= execution.id:
                    # Another process created one since (the same millisecond, or a clock ahead): only
                    # the identifier moves past it; the rest was built before the lock.
                    execution.id = ids.next_id(ids.EXECUTION_PREFIX, newest)
                    row = (execution.id, *row[1:])
                conn.execute(_INSERT_EXECUTION, row)
        self._recent.remember_agent(key, current_agent)
        self._recent.newest_execution = execution.id
        self._recent.remember_execution(dict(zip(_rows.EXECUTION_COLUMNS, row, strict=True)))
        return pb.CreateExecutionResponse(execution=execution, created=True)

    @staticmethod
    def _new_execution(
        message: pb.CreateExecutionRequest, agent: sqlite3.Row, newest: str | None, now: datetime
    ) -> tuple[pb.Execution, tuple[_rows.SqlValue, ...]]:
        snapshot = pb.AgentInstance(id=agent["id"], name=agent["name"])
        execution = executions.new_execution(ids.next_id(ids.EXECUTION_PREFIX, newest), message, snapshot, now)
        return execution, _rows.execution_row(execution, agent["version"])

    @_read_boundary
    def get_execution(self, message: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        validation.validate_execution_id(message.execution_id)
        return pb.GetExecutionResponse(execution=self._read_execution(message.execution_id, _now()))

    @_read_boundary
    def list_executions(self, message: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        validation.validate_list_executions(message)
        size = paging.page_size(message.page_size)
        after = paging.decode_token(message)
        self._expire_due_leases(_now())
        sql, params = page_query(
            message.agent_instance_id, [int(phase) for phase in message.phases], after, message.newest_first, size + 1
        )
        rows, token = paging.cut(message, self._db.execute(sql, params).fetchall(), size, key=lambda row: row["id"])
        return pb.ListExecutionsResponse(
            executions=[_rows.execution_from_row(row) for row in rows], next_page_token=token
        )

    @_group_committed
    def update_execution_status(self, message: pb.UpdateExecutionStatusRequest) -> pb.UpdateExecutionStatusResponse:
        validation.validate_update_execution_status(message)
        updated = self._change(
            message.execution_id, lambda current, now: executions.update_status(current, message, now)
        )
        return pb.UpdateExecutionStatusResponse(execution=updated)

    @_group_committed
    def cancel_execution(self, message: pb.CancelExecutionRequest) -> pb.CancelExecutionResponse:
        validation.validate_cancel_execution(message)
        cancelled = self._change(message.execution_id, lambda current, now: executions.cancel(current, message, now))
        return pb.CancelExecutionResponse(execution=cancelled)

    async def watch_execution(self, message: pb.WatchExecutionRequest) -> AsyncIterator[pb.WatchExecutionResponse]:
        validation.validate_execution_id(message.execution_id)
        try:
            async with self._changes.watching(message.execution_id) as watcher:
                self._group.end()
                execution = await self._read(self._read_execution, message.execution_id, _now())
                while True:
                    yield pb.WatchExecutionResponse(execution=execution)
                    assert execution.status is not None  # every stored execution has one
                    if execution.status.phase in executions.TERMINAL_PHASES:
                        return
                    execution = await self._next_version(execution, watcher)
        except sqlite3.Error as error:
            raise storage_error(error, str(self.path)) from None

    async def _next_version(self, seen: pb.Execution, watcher: Watcher) -> pb.Execution:
        """The version after ``seen``, waiting for it."""
        while True:
            watcher.arm()
            self._group.end()
            row = await self._read(self._history_after, seen)
            if row is not None:
                if row["version"] != seen.version + 1:
                    raise GRPCError(
                        Status.ABORTED, f"the watch of execution {seen.id} fell too far behind; watch it again"
                    )
                status = _rows.status_from_row(row)
                return dataclasses.replace(
                    seen, status=status, version=row["version"], update_time=_rows.timestamp(row["update_us"])
                )
            now = _now()
            if executions.lease_expired(seen, now):
                self._group.end()
                await self._storage.run(self._read_execution, seen.id, now)  # writes the expiry; history picks it up
                continue
            timeout = 1.0
            lease_expire_time = None if seen.status is None else seen.status.lease_expire_time
            if lease_expire_time is not None:
                timeout = min(timeout, max(0.0, (lease_expire_time - now).total_seconds()) + 0.001)
            await watcher.wait(timeout)

    async def _read(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)``, a read: on the read connection while the storage thread is busy (see ``_read_boundary``)."""
        if self._storage.queued and self._reads.open():
            with contextlib.suppress(*_LEFT_TO_THE_THREAD):
                return self._reads.run(functools.partial(fn, *args))
        return await self._storage.run(fn, *args)

    def _history_after(self, seen: pb.Execution) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            f"SELECT version, update_us, {', '.join(STATUS_COLUMN_NAMES)} FROM execution_history "
            "WHERE execution_id = ? AND version > ? ORDER BY version LIMIT 1",
            (seen.id, seen.version),
        ).fetchone()
        return row

    @_read_boundary
    def get_execution_context(self, message: pb.GetExecutionContextRequest) -> pb.GetExecutionContextResponse:
        validation.validate_get_execution_context(message)
        # The proto says this call writes nothing: an expired lease is seen as expired, and left
        # for the next write or list to record.
        stored = _rows.execution_from_row(self._execution_row(self._db, message.execution_id))
        execution = executions.expire_lease(stored, _now()) or stored
        execution_context.check_holder(execution, message.runner_id)
        snapshot_json: str = self._db.execute(
            "SELECT v.agent_instance FROM executions e JOIN agent_instance_versions v "
            "ON v.agent_instance_id = e.agent_instance_id AND v.version = e.agent_version WHERE e.id = ?",
            (execution.id,),
        ).fetchone()[0]
        snapshot = _rows.agent_instance_from_json(snapshot_json)
        assert snapshot.spec is not None  # stored by an apply, which requires one
        return execution_context.build(
            execution, snapshot, self._secret_values(execution_context.referenced_secrets(snapshot.spec))
        )

    def _secret_values(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        with self._snapshot() as conn:  # the key check and the values agree
            return self._vault.values(conn, names)

    # -- agent instances ----------------------------------------------------------------------

    def _agent_row(self, conn: sqlite3.Connection, ref: pb.AgentInstanceRef) -> sqlite3.Row:
        row = _find_agent(conn, ref)
        if row is None:
            raise errors.not_found(
                f"agent instance with id {ref.id!r}" if ref.id is not None else f"agent instance {ref.name!r}"
            )
        return row

    @_read_boundary
    def get_agent_instance(self, message: pb.GetAgentInstanceRequest) -> pb.GetAgentInstanceResponse:
        validation.validate_agent_instance_ref(message.agent_instance, "agent_instance")
        assert message.agent_instance is not None  # validated
        row = self._agent_row(self._db, message.agent_instance)
        return pb.GetAgentInstanceResponse(agent_instance=_rows.agent_instance_from_json(row["agent_instance"]))

    @_storage_boundary
    def apply_agent_instance(self, message: pb.ApplyAgentInstanceRequest) -> pb.ApplyAgentInstanceResponse:
        validation.validate_apply_agent_instance(message)
        now = _now()
        self._recent.forget_agents()
        with self._write() as conn:
            row = conn.execute(f"{_AGENT_SELECT} WHERE a.name = ?", (message.name,)).fetchone()
            existing = None if row is None else _rows.agent_instance_from_json(row["agent_instance"])
            new_id = ""
            if existing is None:
                newest = conn.execute("SELECT max(agent_instance_id) FROM agent_instance_versions").fetchone()[0]
                new_id = ids.next_id(ids.AGENT_INSTANCE_PREFIX, newest)
            agent, outcome = agent_instances.apply(existing, message, new_id, now)
            if outcome == pb.ApplyOutcome.CREATED:
                conn.execute(
                    "INSERT INTO agent_instances (id, name, version) VALUES (?, ?, ?)",
                    (agent.id, agent.name, agent.version),
                )
            elif outcome == pb.ApplyOutcome.UPDATED:
                conn.execute("UPDATE agent_instances SET version = ? WHERE id = ?", (agent.version, agent.id))
            if outcome != pb.ApplyOutcome.UNCHANGED:
                conn.execute(
                    "INSERT INTO agent_instance_versions (agent_instance_id, version, agent_instance) VALUES (?, ?, ?)",
                    (agent.id, agent.version, _rows.agent_instance_to_json(agent)),
                )
        return pb.ApplyAgentInstanceResponse(agent_instance=agent, outcome=outcome)

    @_read_boundary
    def list_agent_instances(self, message: pb.ListAgentInstancesRequest) -> pb.ListAgentInstancesResponse:
        size = paging.page_size(message.page_size)
        after = paging.decode_token(message)
        sql, params = _AGENT_SELECT, []
        if after is not None:
            sql += " WHERE a.name > ?"
            params.append(after)
        rows = self._db.execute(f"{sql} ORDER BY a.name LIMIT ?", (*params, size + 1)).fetchall()
        rows, token = paging.cut(message, rows, size, key=lambda row: row["name"])
        page = [_rows.agent_instance_from_json(row["agent_instance"]) for row in rows]
        return pb.ListAgentInstancesResponse(agent_instances=page, next_page_token=token)

    @_storage_boundary
    def delete_agent_instance(self, message: pb.DeleteAgentInstanceRequest) -> pb.DeleteAgentInstanceResponse:
        validation.validate_agent_instance_ref(message.agent_instance, "agent_instance")
        assert message.agent_instance is not None  # validated
        self._recent.forget_agents()
        with self._write() as conn:
            row = self._agent_row(conn, message.agent_instance)
            conn.execute("DELETE FROM agent_instances WHERE id = ?", (row["id"],))
        return pb.DeleteAgentInstanceResponse()

    # -- secrets ------------------------------------------------------------------------------

    # Values are sealed by SecretVault (see _secrets.py): only ciphertext is ever bound to SQL.

    @_storage_boundary
    def put_secret(self, message: pb.PutSecretRequest) -> pb.PutSecretResponse:
        validation.validate_put_secret(message)
        with self._write() as conn:
            return self._vault.put(conn, message.name, message.value, _now())

    @_read_boundary
    def list_secrets(self, message: pb.ListSecretsRequest) -> pb.ListSecretsResponse:
        size = paging.page_size(message.page_size)
        fetched = self._vault.page(self._db, paging.decode_token(message), size + 1)
        page, token = paging.cut(message, fetched, size, key=lambda secret: secret.name)
        return pb.ListSecretsResponse(secrets=page, next_page_token=token)

    @_storage_boundary
    def delete_secret(self, message: pb.DeleteSecretRequest) -> pb.DeleteSecretResponse:
        validation.validate_secret_name(message.name)
        with self._write() as conn:
            self._vault.delete(conn, message.name)
        return pb.DeleteSecretResponse()

    # -- the master key (local administration, not RPCs) ---------------------------------------

    @_storage_boundary
    def master_key_status(self) -> KeyStatus:
        """Where the master key is, whether it opens this database's secrets, how many there are.

        Never creates a key, and reports problems in ``KeyStatus.problem``
        instead of raising.
        """
        with self._snapshot() as conn:
            return self._vault.status(conn)

    @_storage_boundary
    def rotate_master_key(self, new_key: MasterKey | None = None) -> KeyRotation:
        """Re-encrypts every secret under a new master key, in one transaction, and stores the new key.

        :param new_key: the key to move to; default a new random key, kept
            where the current one is (keychain or key file). Required when
            the current key comes from ``STIGMER_MASTER_KEY``.
        :returns: the ``KeyRotation`` (how many secrets, old key id, the new key's place and id).

        The new key is staged next to the current one before the commit and
        replaces it after, so a crash at any point leaves a key that opens
        every secret. Raises ``GRPCError`` as the secret RPCs do, and
        ``FAILED_PRECONDITION`` when there is no key to rotate.
        """
        with self._write() as conn:
            rotation = self._vault.rotate(conn, new_key)
        self._vault.promote(rotation)
        return rotation


def _is_busy(error: BaseException) -> bool:
    """Another connection holds the lock this statement needs (nothing was changed)."""
    return isinstance(error, sqlite3.OperationalError) and error.sqlite_errorcode & 0xFF in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


# About SQLite's automatic checkpoint size (1,000 pages): a write here adds about 5 pages to the log.
_CHECKPOINT_EVERY = 250
_LONG_LOG = 10_000  # pages: 40 MB of 4 KB pages


def _agent_key(ref: pb.AgentInstanceRef) -> tuple[str, str]:
    """The column and value that find ``ref``'s agent instance."""
    return ("a.id", ref.id) if ref.id is not None else ("a.name", ref.name or "")


def _find_agent(conn: sqlite3.Connection, ref: pb.AgentInstanceRef) -> sqlite3.Row | None:
    key, value = _agent_key(ref)
    row: sqlite3.Row | None = conn.execute(f"{_AGENT_SELECT} WHERE {key} = ?", (value,)).fetchone()
    return row


class _StatusWrite(NamedTuple):
    """A compare-and-set of an execution's status, encoded before the write lock is taken."""

    execution_id: str
    expected_version: int  # the version it was decided on
    version: int
    update_us: int | None
    status: tuple[_rows.SqlValue, ...]  # every status column, in STATUS_COLUMN_NAMES order
    changed: tuple[int, ...]  # which of them change (their positions)


def _status_write(
    before: pb.Execution, after: pb.Execution, stored: tuple[_rows.SqlValue, ...] | None = None
) -> _StatusWrite:
    """``after`` over ``before``, whose status columns hold ``stored`` (encoded from ``before`` if not given)."""
    assert before.status is not None and after.status is not None  # every stored execution has one
    old = stored if stored is not None else _rows.status_row(before.status)
    new = _rows.status_row(after.status)
    changed = tuple(index for index, (was, now) in enumerate(zip(old, new, strict=True)) if was != now)
    return _StatusWrite(after.id, before.version, after.version, _rows.micros(after.update_time), new, changed)


def _stored_status(row: _rows.StoredRow) -> tuple[_rows.SqlValue, ...]:
    return tuple(row[name] for name in STATUS_COLUMN_NAMES)


@functools.cache
def _cas_update(changed: tuple[int, ...]) -> str:
    # Only the columns that change: SQLite rewrites an index's entry whenever a column of it is
    # assigned, even its own value. A lease renewal that set the phase again rewrote both phase
    # indexes, 6 pages in the log instead of 4 (pages per commit, read back from the log file).
    assign = "".join(f", {STATUS_COLUMN_NAMES[index]} = ?" for index in changed)
    return f"UPDATE executions SET version = ?, update_us = ?{assign} WHERE id = ? AND version = ?"


def _compare_and_set(conn: sqlite3.Connection, write: _StatusWrite) -> bool:
    """Writes a status if the row is still at the version it was decided on; whether it was."""
    parameters = (
        write.version,
        write.update_us,
        *(write.status[index] for index in write.changed),
        write.execution_id,
        write.expected_version,
    )
    return conn.execute(_cas_update(write.changed), parameters).rowcount == 1


class _RowChanged(Exception):
    """Another writer changed the row between the decision and the write lock."""


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, waiting up to ``busy_timeout`` for other openers.

    Switching a new file to WAL needs an exclusive lock, and SQLite returns SQLITE_BUSY at once
    instead of calling the busy handler when another process holds a lock (several processes
    opening a new file together); once the file is in WAL mode the pragma takes no lock.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode: str = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            return mode
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(0.001)
