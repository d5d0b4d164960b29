"""The log is copied into the database file mostly on the checkpointer's thread (``_checkpointer``).

Real files in WAL mode with SQLite's automatic checkpoint off, as the backend opens them. The
thread's pass is awaited on its own event (``_passed``), never by sleeping.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._backend import _CHECKPOINT_EVERY
from stigmer_backend.backends.sqlite._checkpointer import Checkpointer

from ..builders import create_request
from ._support import agent_request, statements


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def _commit_row(conn: sqlite3.Connection, number: int) -> None:
    conn.execute("INSERT INTO t (n, pad) VALUES (?, randomblob(3000))", (number,))


def test_the_thread_copies_the_bulk_and_the_owner_only_what_was_written_since(tmp_path):
    path = tmp_path / "log.db"
    owner = _open(path)
    owner.execute("CREATE TABLE t (n INTEGER, pad BLOB)")
    opened_on: list[int] = []
    caught_up: list[tuple[int, int, int]] = []

    def connect() -> sqlite3.Connection:
        opened_on.append(threading.get_ident())
        return _open(path)

    def catch_up() -> None:
        caught_up.append(owner.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())

    checkpoints = Checkpointer(connect, catch_up, every=20, name="test-checkpoint")
    try:
        for number in range(20):
            _commit_row(owner, number)
            checkpoints.committed()
        assert checkpoints._passed.wait(timeout=30), "the thread's pass never finished"
        assert opened_on and opened_on[0] != threading.get_ident()  # its own connection, on its own thread
        assert checkpoints.last_pass is not None
        busy, log, copied = checkpoints.last_pass
        assert busy == 0 and copied == log >= 20  # every frame of the 20 commits, copied on the thread
        assert caught_up == []  # nothing inline until the next commit

        _commit_row(owner, 20)
        checkpoints.committed()
        assert len(caught_up) == 1
        _, log_after, copied_after = caught_up[0]
        assert copied_after == log_after  # nothing left in the log: the next write starts it again
        assert log_after - copied < 5  # inline: only the last commit's few frames
        assert checkpoints.commits == 0
    finally:
        checkpoints.close()
        owner.close()


def test_a_pass_the_thread_cannot_run_is_done_whole_by_the_owner(tmp_path):
    path = tmp_path / "log.db"
    owner = _open(path)
    owner.execute("CREATE TABLE t (n INTEGER, pad BLOB)")
    caught_up: list[tuple[int, int, int]] = []

    def connect() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    checkpoints = Checkpointer(
        connect,
        lambda: caught_up.append(owner.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()),
        every=5,
        name="test-checkpoint",
    )
    try:
        for number in range(5):
            _commit_row(owner, number)
            checkpoints.committed()
        assert checkpoints._passed.wait(timeout=30)
        assert checkpoints.passes == 0 and checkpoints.last_pass is None
        _commit_row(owner, 5)
        checkpoints.committed()
        ((_, log, copied),) = caught_up
        assert copied == log >= 6  # all of it, inline
    finally:
        checkpoints.close()
        owner.close()


def test_close_ends_the_thread_and_a_checkpointer_never_asked_starts_none(tmp_path):
    checkpoints = Checkpointer(lambda: _open(tmp_path / "x.db"), lambda: None, every=3, name="test-checkpoint")
    checkpoints.committed()
    assert checkpoints._thread is None
    checkpoints.close()
    assert checkpoints._thread is None

    started = Checkpointer(lambda: _open(tmp_path / "x.db"), lambda: None, every=1, name="test-checkpoint")
    started.committed()
    thread = started._thread
    assert thread is not None
    started.close()
    assert not thread.is_alive()
    started.committed()  # after close: counted, no thread started again
    assert started._thread is None


async def test_the_backend_checkpoints_on_its_thread_and_catches_up_on_its_connection(db_path):
    async with SqliteBackend(db_path) as backend:
        await backend.apply_agent_instance(agent_request())
        for number in range(_CHECKPOINT_EVERY):
            await backend.create_execution(create_request(f"r-{number}"))
        assert backend._checkpoints._passed.wait(timeout=30)
        assert backend._checkpoints.passes == 1
        executed = statements(backend)
        await backend.create_execution(create_request("after"))
        assert "PRAGMA wal_checkpoint(PASSIVE)" in executed  # the catch-up, on the backend's connection
        assert backend._checkpoints.commits == 0
