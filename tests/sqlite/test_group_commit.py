"""Execution writes of one event-loop step share one transaction; each answers only once it is committed.

See ``backends/sqlite/_group_commit.py``. Every check reads the file through a separate connection
(``raw``), so "committed" means what another process would see.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend, _backend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import raw, seed, statements

RUNNER = "runner-1"


def _claim(execution: pb.Execution, expected_version: int = 1) -> pb.UpdateExecutionStatusRequest:
    return pb.UpdateExecutionStatusRequest(
        execution_id=execution.id,
        phase=pb.ExecutionPhase.RUNNING,
        runner_id=RUNNER,
        expected_version=expected_version,
    )


def _versions(db_path: Path) -> dict[str, int]:
    with raw(db_path) as conn:
        return {row["id"]: row["version"] for row in conn.execute("SELECT id, version FROM executions")}


async def test_the_writes_of_one_step_commit_once_and_each_answers_after_its_commit(db_path: Path) -> None:
    executions = await seed(db_path, executions=8)
    async with SqliteBackend(db_path) as backend:
        executed = statements(backend)

        async def claim(execution: pb.Execution) -> int:
            response = await backend.update_execution_status(_claim(execution))
            # Answered: another connection sees the write already.
            assert _versions(db_path)[execution.id] == 2
            assert response.execution.version == 2
            return response.execution.version

        assert await asyncio.gather(*(claim(execution) for execution in executions)) == [2] * 8
    assert executed.count("COMMIT") == 1
    assert executed.count("BEGIN IMMEDIATE") == 1
    assert not [sql for sql in executed if sql.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))]
    assert set(_versions(db_path).values()) == {2}


async def test_a_refused_write_takes_back_only_its_own_changes(db_path: Path) -> None:
    first, stale, last = await seed(db_path, executions=3)
    async with SqliteBackend(db_path) as backend:
        executed = statements(backend)
        results = await asyncio.gather(
            backend.update_execution_status(_claim(first)),
            backend.update_execution_status(_claim(stale, expected_version=7)),
            backend.update_execution_status(_claim(last)),
            return_exceptions=True,
        )
    assert isinstance(results[1], GRPCError) and results[1].status == Status.ABORTED
    assert [result.execution.version for result in (results[0], results[2])] == [2, 2]  # type: ignore[union-attr]
    assert executed.count("COMMIT") == 1
    assert _versions(db_path) == {first.id: 2, stale.id: 1, last.id: 2}


async def test_a_write_that_fails_after_changing_rows_takes_back_the_writes_before_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no savepoint per write, such a write takes back the transaction it shares; the writes
    in it fail, and the next write of the step opens a transaction of its own."""
    first, broken, last = await seed(db_path, executions=3)
    real = _backend._compare_and_set

    def storage_error_after_the_update(conn: sqlite3.Connection, write: _backend._StatusWrite) -> bool:
        matched = real(conn, write)
        if write.execution_id == broken.id:
            error = sqlite3.OperationalError("disk I/O error")  # as the write's next statement would raise it
            error.sqlite_errorcode, error.sqlite_errorname = sqlite3.SQLITE_IOERR, "SQLITE_IOERR"
            raise error
        return matched

    monkeypatch.setattr(_backend, "_compare_and_set", storage_error_after_the_update)
    async with SqliteBackend(db_path) as backend:
        executed = statements(backend)
        results = await asyncio.gather(
            *(backend.update_execution_status(_claim(execution)) for execution in (first, broken, last)),
            return_exceptions=True,
        )
        assert [type(result) for result in results] == [GRPCError, GRPCError, pb.UpdateExecutionStatusResponse]
        assert results[0].status == results[1].status == Status.INTERNAL  # type: ignore[union-attr]
        assert executed.count("ROLLBACK") == 1 and executed.count("BEGIN IMMEDIATE") == 2
        assert _versions(db_path) == {first.id: 1, broken.id: 1, last.id: 2}
        retried = await backend.update_execution_status(_claim(first))  # nothing of the taken-back write is kept
        assert retried.execution.version == 2


async def test_a_write_whose_error_ended_the_transaction_fails_the_writes_before_it_with_that_error(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite rolls a whole transaction back on some errors (a full disk): nothing changed, yet
    the writes before it are gone, and they fail with the error that took them."""
    first, broken = await seed(db_path, executions=2)
    real = _backend._compare_and_set

    def full_disk(conn: sqlite3.Connection, write: _backend._StatusWrite) -> bool:
        if write.execution_id == broken.id:
            conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode, error.sqlite_errorname = sqlite3.SQLITE_FULL, "SQLITE_FULL"
            raise error
        return real(conn, write)

    monkeypatch.setattr(_backend, "_compare_and_set", full_disk)
    async with SqliteBackend(db_path) as backend:
        results = await asyncio.gather(
            *(backend.update_execution_status(_claim(execution)) for execution in (first, broken)),
            return_exceptions=True,
        )
    assert [getattr(result, "status", result) for result in results] == [Status.RESOURCE_EXHAUSTED] * 2
    assert _versions(db_path) == {first.id: 1, broken.id: 1}


async def test_a_refused_retry_of_a_create_writes_nothing_even_with_a_lease_to_expire(db_path: Path) -> None:
    """The expiry a create finds on its way is written only once the create is not refused."""
    running, other = await seed(db_path, executions=2)
    async with SqliteBackend(db_path) as backend:
        await backend.update_execution_status(_claim(running))
    with raw(db_path) as conn:
        conn.execute("UPDATE executions SET lease_expire_us = 1 WHERE id = ?", (running.id,))
    async with SqliteBackend(db_path) as backend:
        executed = statements(backend)
        claimed, refused = await asyncio.gather(
            backend.update_execution_status(_claim(other)),
            backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id="seed-0",  # ``running``'s, with another input
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message="not the same task"),
                )
            ),
            return_exceptions=True,
        )
    assert isinstance(refused, GRPCError) and refused.status == Status.ALREADY_EXISTS
    assert isinstance(claimed, pb.UpdateExecutionStatusResponse) and claimed.execution.version == 2
    assert "ROLLBACK" not in executed
    assert _versions(db_path) == {running.id: 2, other.id: 2}


async def test_when_the_commit_fails_every_write_of_the_step_fails_and_none_is_in_the_file(db_path: Path) -> None:
    *claimed, spoiled = await seed(db_path, executions=4)
    async with SqliteBackend(db_path) as backend:
        assert backend._conn is not None
        conn = backend._conn

        async def spoil_the_transaction() -> None:
            # Runs in the same step, after the claims joined the transaction: a deferred foreign
            # key violation makes its COMMIT fail, as a full disk or an I/O error would.
            assert conn.in_transaction
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute("UPDATE executions SET agent_version = 999 WHERE id = ?", (spoiled.id,))

        results = await asyncio.gather(
            *(backend.update_execution_status(_claim(execution)) for execution in claimed),
            spoil_the_transaction(),
            return_exceptions=True,
        )
        assert all(isinstance(result, GRPCError) for result in results[:3]), results
        # The backend goes on: the next write commits on its own.
        retried = await backend.update_execution_status(_claim(claimed[0]))
        assert retried.execution.version == 2
    assert _versions(db_path) == {claimed[0].id: 2, claimed[1].id: 1, claimed[2].id: 1, spoiled.id: 1}
    with raw(db_path) as check:
        assert check.execute("SELECT agent_version FROM executions WHERE id = ?", (spoiled.id,)).fetchone()[0] == 1


async def test_a_read_in_the_same_step_sees_the_writes_before_it_committed(db_path: Path) -> None:
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend:
        executed = statements(backend)
        claimed, read = await asyncio.gather(
            backend.update_execution_status(_claim(execution)),
            backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id)),
        )
    assert claimed.execution.version == read.execution.version == 2
    # The read committed the open transaction before it ran: it never reads inside one.
    assert executed.index("COMMIT") < max(i for i, sql in enumerate(executed) if sql.startswith("SELECT"))


@pytest.mark.parametrize("cancelled", [0, 1])
async def test_a_caller_that_stops_waiting_leaves_the_others_their_answers(db_path: Path, cancelled: int) -> None:
    executions = await seed(db_path, executions=2)
    async with SqliteBackend(db_path) as backend:
        tasks = [asyncio.ensure_future(backend.update_execution_status(_claim(e))) for e in executions]
        await asyncio.sleep(0)  # both ran their writes and wait for the commit
        tasks[cancelled].cancel()
        done, _ = await asyncio.wait(tasks, timeout=10)
        assert len(done) == 2
        assert tasks[cancelled].cancelled()
        assert tasks[1 - cancelled].result().execution.version == 2
    # The cancelled caller's write was done and committed with the rest, as a write handed to the storage thread is.
    assert set(_versions(db_path).values()) == {2}


def test_sqlite_reports_the_deferred_violation_at_commit() -> None:
    """The failure the test above relies on is SQLite's, at COMMIT (not at the UPDATE)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE b (a_id INTEGER REFERENCES a (id))")
    conn.execute("BEGIN")
    conn.execute("PRAGMA defer_foreign_keys = ON")
    conn.execute("INSERT INTO b VALUES (5)")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("COMMIT")


async def test_a_lone_writer_commits_each_write_at_once_without_waiting_for_the_step_to_end(db_path: Path) -> None:
    """With one write per step (a CLI command, one call in flight) grouping gains nothing: no wait."""
    executions = await seed(db_path, executions=3)
    async with SqliteBackend(db_path) as backend:
        await backend.update_execution_status(_claim(executions[0]))  # a step with one write
        await asyncio.sleep(0)  # that step has ended: the backend knows it had one write
        steps = 0

        async def count_steps() -> None:
            nonlocal steps
            while True:
                steps += 1
                await asyncio.sleep(0)

        counter = asyncio.ensure_future(count_steps())
        await asyncio.sleep(0)
        before = steps
        for execution in executions[1:]:
            await backend.update_execution_status(_claim(execution))
            assert _versions(db_path)[execution.id] == 2
        during = steps - before
        counter.cancel()
    assert during == 0, "a lone write waited for the event loop"
