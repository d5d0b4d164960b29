"""A status write decided outside the write lock is decided again when another writer got there first.

The backend reads the row and applies the rules before ``BEGIN IMMEDIATE`` (so other processes wait
less for the lock), then writes with a compare-and-set on the version it decided on. Here another
connection commits a new version in exactly that gap: when the backend begins its transaction.
"""

from __future__ import annotations

import sqlite3

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import seed


async def test_a_write_that_lost_the_race_is_decided_again_on_the_winning_row(db_path):
    [execution] = await seed(db_path, executions=1)
    other = sqlite3.connect(db_path, isolation_level=None)
    raced = []

    def commit_first(sql: str) -> None:
        if sql == "BEGIN IMMEDIATE" and not raced:
            raced.append(sql)
            other.execute(
                "UPDATE executions SET version = version + 1, update_us = update_us + 1, message = 'other writer' "
                "WHERE id = ?",
                (execution.id,),
            )

    try:
        async with SqliteBackend(db_path) as backend:
            backend._conn.set_trace_callback(commit_first)
            cancelled = await backend.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id))
            backend._conn.set_trace_callback(None)
        history = other.execute(
            "SELECT version, message FROM execution_history WHERE execution_id = ? ORDER BY version", (execution.id,)
        ).fetchall()
    finally:
        other.close()
    assert raced
    assert cancelled.execution.version == 3  # decided on version 2, the other writer's
    assert cancelled.execution.status.phase == pb.ExecutionPhase.CANCELLED
    assert history == [(1, ""), (2, "other writer"), (3, cancelled.execution.status.message)]
