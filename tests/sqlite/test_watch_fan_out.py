"""A write wakes the watchers of the execution it changed, and no others.

Counted with SQLite's statement trace on every connection the backend opens: after a write to an
unwatched execution and one to a watched execution, with 50 watchers idle on other executions,
the history is queried only for the watched execution that changed, and the change log is read
once per batch of commits, not once per watcher.
"""

from __future__ import annotations

import asyncio
import sqlite3

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import seed

IDLE = 50


async def test_a_write_queries_the_history_only_for_the_watchers_of_its_execution(db_path, monkeypatch):
    executions = await seed(db_path, executions=IDLE + 2)
    statements: list[str] = []
    connect = SqliteBackend._connect

    def traced(self) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(SqliteBackend, "_connect", traced)
    watched, unwatched = executions[0], executions[-1]
    received: dict[str, list[pb.Execution]] = {execution.id: [] for execution in executions}
    arrived = {execution.id: asyncio.Event() for execution in executions}

    async def watch(execution_id: str) -> None:
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            received[execution_id].append(response.execution)
            arrived[execution_id].set()

    async with SqliteBackend(db_path) as backend:
        tasks = [asyncio.create_task(watch(execution.id)) for execution in executions[: IDLE + 1]]
        try:
            for execution in executions[: IDLE + 1]:
                await arrived[execution.id].wait()
                arrived[execution.id].clear()
            statements.clear()
            for execution in (unwatched, watched):
                await backend.update_execution_status(
                    pb.UpdateExecutionStatusRequest(
                        execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="runner-1"
                    )
                )
            await asyncio.wait_for(arrived[watched.id].wait(), 30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    assert [execution.version for execution in received[watched.id]] == [1, 2]
    assert all(len(received[execution.id]) == 1 for execution in executions[1 : IDLE + 1])
    history_reads = [sql for sql in statements if "FROM execution_history" in sql]
    assert history_reads, statements
    assert all(watched.id in sql for sql in history_reads), history_reads  # no idle watcher woke
    assert len(history_reads) <= 2  # the version it got, and the look for the one after
    change_reads = [sql for sql in statements if "FROM execution_changes" in sql]
    assert 1 <= len(change_reads) <= 2, change_reads  # both commits in one read, or one read each
