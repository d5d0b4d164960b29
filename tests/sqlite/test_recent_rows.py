"""A write decides on the row this backend committed last instead of reading it back (``_recent``).

The compare-and-set still runs on the stored row, so another writer's change since, a refusal
decided on a kept row, and a commit that failed must all end as if the row had been read. The
other writer here is a second ``SqliteBackend`` on the same file: a connection of its own, as
another process's would be.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._recent import RecentRows
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..builders import create_request
from ._support import agent_request, raw, seed, statements

RUNNER = "runner-1"


def _update(
    execution_id: str, version: int, phase: pb.ExecutionPhase, **fields: object
) -> pb.UpdateExecutionStatusRequest:
    return pb.UpdateExecutionStatusRequest(
        execution_id=execution_id, expected_version=version, phase=phase, runner_id=RUNNER, **fields
    )


def _outside_transactions(executed: list[str]) -> list[str]:
    """The statements run in no transaction of their own making: each one a read transaction."""
    outside, depth = [], 0
    for sql in executed:
        if sql.startswith("BEGIN"):
            depth = 1
        elif sql in ("COMMIT", "ROLLBACK"):
            depth = 0
        elif not depth:
            outside.append(sql)
    return outside


async def test_a_lifecycle_after_the_first_create_reads_nothing_outside_its_write_transactions(db_path: Path) -> None:
    await seed(db_path)
    async with SqliteBackend(db_path) as backend:
        # From here the agent's row and the newest id are known.
        await backend.create_execution(create_request("warm-up"))
        executed = statements(backend)
        created = (await backend.create_execution(create_request("lifecycle"))).execution
        claimed = await backend.update_execution_status(_update(created.id, 1, pb.ExecutionPhase.RUNNING))
        renewed = await backend.update_execution_status(
            _update(created.id, 2, pb.ExecutionPhase.RUNNING, message="step 1")
        )
        done = await backend.update_execution_status(_update(created.id, 3, pb.ExecutionPhase.SUCCEEDED))
        executed = list(executed)  # not the closing's
    assert [claimed.execution.version, renewed.execution.version, done.execution.version] == [2, 3, 4]
    assert executed.count("BEGIN IMMEDIATE") == 4
    assert _outside_transactions(executed) == []
    # One statement in each transaction: the create's checks are in its INSERT (the trace repeats
    # a statement once per trigger program it runs).
    kinds = [sql.split()[0] for sql in executed if not sql.startswith("--")]
    kinds = [kind for index, kind in enumerate(kinds) if not index or kinds[index - 1] != kind]
    assert kinds == ["BEGIN", "INSERT", "COMMIT"] + ["BEGIN", "UPDATE", "COMMIT"] * 3, executed
    # Stored as answered: the row the writes decided on was the stored one.
    async with SqliteBackend(db_path) as fresh:
        stored = await fresh.get_execution(pb.GetExecutionRequest(execution_id=created.id))
    assert stored.execution == done.execution


async def test_a_renewal_assigns_only_the_columns_that_change(db_path: Path) -> None:
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend:
        await backend.update_execution_status(_update(execution.id, 1, pb.ExecutionPhase.RUNNING, message="claimed"))
        executed = statements(backend)
        await backend.update_execution_status(_update(execution.id, 2, pb.ExecutionPhase.RUNNING, message="step 1"))
    # The trace repeats a statement once per trigger program it runs.
    [update] = {sql for sql in executed if sql.startswith("UPDATE executions")}
    # The phase is the same: assigning it would rewrite both phase indexes' entries.
    assert " phase = " not in update and "message = " in update


async def test_a_refusal_decided_on_a_kept_row_is_decided_again_on_the_stored_row(db_path: Path) -> None:
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend, SqliteBackend(db_path) as other:
        await backend.update_execution_status(_update(execution.id, 1, pb.ExecutionPhase.RUNNING))  # kept: version 2
        await other.update_execution_status(_update(execution.id, 2, pb.ExecutionPhase.RUNNING, message="other"))
        # Version 3 is stored: the kept row (2) would refuse this; the stored one accepts it.
        renewed = await backend.update_execution_status(
            _update(execution.id, 3, pb.ExecutionPhase.RUNNING, message="mine")
        )
    assert renewed.execution.version == 4
    assert renewed.execution.status.message == "mine"


async def test_a_write_decided_on_a_kept_row_another_writer_changed_answers_as_a_fresh_backend_would(
    db_path: Path,
) -> None:
    executions = await seed(db_path, executions=2)
    answers = []
    for execution, kept in zip(executions, (True, False), strict=True):
        async with SqliteBackend(db_path) as backend, SqliteBackend(db_path) as other:
            await backend.update_execution_status(_update(execution.id, 1, pb.ExecutionPhase.RUNNING))
            if not kept:
                backend._recent.forget_execution(execution.id)
            await other.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id))
            with pytest.raises(GRPCError) as refused:
                await backend.update_execution_status(_update(execution.id, 2, pb.ExecutionPhase.RUNNING))
            answers.append(refused.value.status)
    assert answers[0] == answers[1] == Status.ABORTED


async def test_a_create_after_another_writer_applied_the_agent_again_snapshots_the_new_version(
    db_path: Path,
) -> None:
    await seed(db_path)
    async with SqliteBackend(db_path) as backend, SqliteBackend(db_path) as other:
        first = (await backend.create_execution(create_request("first"))).execution  # keeps the agent's version 1
        changed = agent_request()
        assert changed.spec is not None
        changed.spec.instructions = "the second version"
        assert (await other.apply_agent_instance(changed)).agent_instance.version == 2
        second = (await backend.create_execution(create_request("second"))).execution
    assert second.id > first.id
    with raw(db_path) as conn:
        versions = dict(conn.execute("SELECT request_id, agent_version FROM executions").fetchall())
    assert versions == {"first": 1, "second": 2}


async def test_after_a_failed_commit_no_kept_row_decides_a_write(db_path: Path) -> None:
    claimed, spoiled = await seed(db_path, executions=2)
    async with SqliteBackend(db_path) as backend, SqliteBackend(db_path) as other:
        assert backend._conn is not None
        conn = backend._conn

        async def spoil_the_transaction() -> None:
            # Joins the step's transaction after the claim did: its COMMIT fails (see test_group_commit).
            conn.execute("PRAGMA defer_foreign_keys = ON")
            conn.execute("UPDATE executions SET agent_version = 999 WHERE id = ?", (spoiled.id,))

        results = await asyncio.gather(
            backend.update_execution_status(_update(claimed.id, 1, pb.ExecutionPhase.RUNNING)),
            spoil_the_transaction(),
            return_exceptions=True,
        )
        assert isinstance(results[0], GRPCError), results
        # Version 2 is now someone else's: a cancellation. Kept, the claim taken back (also version
        # 2) would pass the compare-and-set and turn the cancelled execution into a running one.
        await other.cancel_execution(pb.CancelExecutionRequest(execution_id=claimed.id))
        with pytest.raises(GRPCError) as refused:
            await backend.update_execution_status(_update(claimed.id, 2, pb.ExecutionPhase.RUNNING))
    assert refused.value.status == Status.FAILED_PRECONDITION
    with raw(db_path) as check:
        phase = check.execute("SELECT phase FROM executions WHERE id = ?", (claimed.id,)).fetchone()[0]
    assert phase == pb.ExecutionPhase.CANCELLED


def _row(execution_id: str, phase: pb.ExecutionPhase) -> dict[str, object]:
    return {"id": execution_id, "phase": int(phase), "version": 1}


def test_finished_executions_are_not_kept_and_the_least_recently_written_goes_first() -> None:
    recent = RecentRows(capacity=2)
    for name in ("a", "b"):
        recent.remember_execution(_row(name, pb.ExecutionPhase.RUNNING))
    recent.remember_execution(_row("a", pb.ExecutionPhase.RUNNING))  # written again: now the most recent
    recent.remember_execution(_row("c", pb.ExecutionPhase.PENDING))
    assert [name for name in "abc" if recent.execution(name) is not None] == ["a", "c"]
    recent.remember_execution(_row("a", pb.ExecutionPhase.SUCCEEDED))
    assert recent.execution("a") is None and recent.execution("c") is not None
