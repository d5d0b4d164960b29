"""Where the database lives, its permissions, its pragmas, and how writes are transacted."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend, default_database_path
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import agent_request, raw, seed


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """A umask that filters nothing, so only the code decides the modes."""
    previous = os.umask(0)
    yield
    os.umask(previous)


async def test_stigmer_home_is_created_private_and_holds_local_db(tmp_path, monkeypatch, open_umask):
    home = tmp_path / "state" / "stigmer"
    monkeypatch.setenv("STIGMER_HOME", str(home))
    async with SqliteBackend() as backend:
        await backend.apply_agent_instance(agent_request())
        assert backend.path == home / "local.db"
        assert mode(home) == 0o700
        assert mode(home / "local.db") == 0o600
        # SQLite gives the companions the mode of the database file.
        assert mode(home / "local.db-wal") == 0o600
        assert mode(home / "local.db-shm") == 0o600


async def test_default_home_is_dot_stigmer_in_the_user_home(tmp_path, monkeypatch, open_umask):
    monkeypatch.delenv("STIGMER_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_database_path() == tmp_path / ".stigmer" / "local.db"
    async with SqliteBackend() as backend:
        assert backend.path == tmp_path / ".stigmer" / "local.db"
    assert mode(tmp_path / ".stigmer") == 0o700
    assert mode(tmp_path / ".stigmer" / "local.db") == 0o600


async def test_explicit_path_is_used_as_given(db_path, monkeypatch, tmp_path, open_umask):
    monkeypatch.setenv("STIGMER_HOME", str(tmp_path / "unused"))
    async with SqliteBackend(db_path) as backend:
        await backend.apply_agent_instance(agent_request())
    assert mode(db_path) == 0o600
    assert not (tmp_path / "unused").exists()
    with raw(db_path) as conn:
        assert conn.execute("SELECT name FROM agent_instances").fetchall()[0][0] == "helper"


def _busy_timeout(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA busy_timeout").fetchone()[0]


async def test_pragmas_of_the_connection(db_path):
    async with SqliteBackend(db_path) as backend:
        conn = backend._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        # Calls on the event loop never wait for a lock; the storage thread waits the busy timeout.
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        assert await backend._storage.run_on_thread(lambda: _busy_timeout(conn)) == 30_000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    async with SqliteBackend(db_path, busy_timeout=2.5) as backend:
        assert await backend._storage.run_on_thread(lambda: _busy_timeout(backend._conn)) == 2_500
    # WAL is a property of the file: any other connection sees it too.
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_foreign_keys_are_enforced_on_the_backend_connection(db_path):
    async with SqliteBackend(db_path) as backend:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            backend._conn.execute(
                "INSERT INTO execution_history (execution_id, version, update_us, phase, message, runner_id) "
                "VALUES ('exe_missing', 1, 0, 1, '', '')"
            )


async def test_uniqueness_is_a_database_constraint(db_path):
    """Names and request ids are unique in the schema itself, whatever code writes the rows."""
    [execution] = await seed(db_path, executions=1)
    with raw(db_path) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        agent_id = conn.execute("SELECT id FROM agent_instances").fetchone()[0]
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("INSERT INTO agent_instances (id, name, version) VALUES ('agi_other', 'helper', 1)")
        row = dict(conn.execute("SELECT * FROM executions").fetchone())
        row["id"] = "exe_other"
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(
                f"INSERT INTO executions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
        assert conn.execute("SELECT count(*) FROM executions").fetchone()[0] == 1
        assert [r[0] for r in conn.execute("SELECT id FROM agent_instances")] == [agent_id]
        assert row["request_id"] == execution.request_id


async def test_every_read_modify_write_is_one_immediate_transaction(db_path):
    """Every write of a write RPC runs between one BEGIN IMMEDIATE and its COMMIT, checked there.

    Reads may come before the transaction (the decision is prepared outside the write lock), but
    only reads; inside it, a status write is a compare-and-set on the version it was decided on,
    an apply reads what decides it again, and a create's INSERT checks what it was built on.
    """
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend:
        statements: list[str] = []
        backend._conn.set_trace_callback(statements.append)
        calls = {
            "apply": lambda: backend.apply_agent_instance(
                pb.ApplyAgentInstanceRequest(
                    name="helper", spec=pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="other"))
                )
            ),
            "create": lambda: backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id="new",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message="hi"),
                )
            ),
            "claim": lambda: backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="a", expected_version=1
                )
            ),
            "cancel": lambda: backend.cancel_execution(
                pb.CancelExecutionRequest(execution_id=execution.id, expected_version=2)
            ),
        }
        for name, call in calls.items():
            statements.clear()
            await call()
            # Trigger programs may be reported as extra lines ("-- TRIGGER ..." or the statement again).
            top_level = [s for s in statements if not s.startswith("--")]
            begin = top_level.index("BEGIN IMMEDIATE")
            assert all(s.startswith("SELECT") for s in top_level[:begin]), (name, top_level)
            assert top_level[-1] == "COMMIT", (name, top_level)
            inside = top_level[begin + 1 : -1]
            assert all(s not in ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") for s in inside), (name, top_level)
            writes = [s for s in inside if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
            reads = [s for s in inside if s.startswith("SELECT")]
            assert writes, (name, top_level)
            if name in ("claim", "cancel"):
                assert all(s.startswith("UPDATE executions") and "AND version = " in s for s in writes), writes
            elif name == "create":  # built on the agent row read before: its INSERT checks that row is current
                [insert] = set(writes)  # the trace repeats it once per trigger program it runs
                assert "EXISTS (SELECT 1 FROM agent_instances WHERE id = " in insert, insert
                assert "NOT EXISTS (SELECT 1 FROM executions WHERE request_id = 'new')" in insert, insert
            else:
                assert reads, (name, top_level)


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_a_held_lock_is_waited_for_up_to_the_busy_timeout(db_path):
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend:
        holder = _hold_write_lock(db_path)
        released = threading.Event()

        def release() -> None:
            holder.execute("COMMIT")
            released.set()

        timer = threading.Timer(0.5, release)
        timer.start()
        try:
            assert not released.is_set()  # the lock is held when the write starts...
            response = await backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="a", expected_version=1
                )
            )
            assert released.is_set()  # ...and the write could only finish after it was released
            assert response.execution.version == 2
        finally:
            timer.join()
            holder.close()


async def test_a_lock_held_past_the_busy_timeout_is_unavailable_and_writes_nothing(db_path):
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path, busy_timeout=0.2) as backend:
        holder = _hold_write_lock(db_path)
        try:
            started = time.monotonic()
            with pytest.raises(GRPCError) as caught:
                await backend.update_execution_status(
                    pb.UpdateExecutionStatusRequest(
                        execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="a", expected_version=1
                    )
                )
            assert time.monotonic() - started >= 0.2
        finally:
            holder.close()
        assert caught.value.status == Status.UNAVAILABLE
        assert str(db_path) in caught.value.message
        assert "locked" in caught.value.message
        # The lock is gone: the state is unchanged, and the same write now succeeds.
        current = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution
        assert current.version == 1 and current.status.phase == pb.ExecutionPhase.PENDING
        retried = await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="a", expected_version=1
            )
        )
        assert retried.execution.version == 2


async def test_the_backend_checkpoints_the_log_itself_so_it_starts_again(db_path):
    """SQLite's automatic checkpoint is off; every ``_CHECKPOINT_EVERY`` writes the backend checkpoints.

    Each of those checkpoints lets the next write start the log from its beginning, so the
    log's file stops growing: without them it would grow by as much in every round. The bulk
    of a checkpoint runs on the checkpointer's thread while writes go on (``_checkpointer``);
    each round waits for it, so every round writes as many commits into the log.
    """

    wal = db_path.with_name(db_path.name + "-wal")
    sizes = []
    async with SqliteBackend(db_path) as backend:
        assert backend._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        await backend.apply_agent_instance(agent_request())
        agent = pb.AgentInstanceRef(name="helper")
        created = 0
        for _ in range(4):
            while True:  # until a checkpoint is asked for: _CHECKPOINT_EVERY commits since the last one
                await backend.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=f"r{created}", agent_instance=agent, input=pb.ExecutionInput(message="hi")
                    )
                )
                created += 1
                if backend._checkpoints._requested:
                    break
            assert backend._checkpoints._passed.wait(timeout=60)
            sizes.append(wal.stat().st_size)
    assert sizes[3] < 1.5 * sizes[0], sizes
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM executions").fetchone()[0] == created


async def test_a_process_that_writes_a_little_leaves_its_writes_copied_out_of_the_log(db_path, tmp_path):
    """A CLI command writes a few times and closes while a server keeps the file open."""
    async with SqliteBackend(db_path) as server:  # holds the file open: no close below is the last
        await server.list_executions(pb.ListExecutionsRequest())
        async with SqliteBackend(db_path) as command:
            await command.apply_agent_instance(agent_request())
            for i in range(3):
                await command.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=f"r{i}",
                        agent_instance=pb.AgentInstanceRef(name="helper"),
                        input=pb.ExecutionInput(message="hi"),
                    )
                )
        # The database file alone, without its log, holds what the command wrote.
        alone = tmp_path / "alone.db"
        alone.write_bytes(db_path.read_bytes())
        with raw(alone) as conn:
            assert conn.execute("SELECT count(*) FROM executions").fetchone()[0] == 3
