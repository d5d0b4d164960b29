"""A cancelled ``WatchExecution`` ends, whatever event-loop step the cancellation lands on.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the step where the
awaited event fires (the wake-up of a write): the watcher went back to waiting and never ended.
"""

from __future__ import annotations

import asyncio

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import seed

STEPS = 10  # cancel 0..9 event-loop steps after the write: the wake-up and everything it schedules
TRIALS_PER_STEP = 100  # 1,000 trials in all
RUNNER = "runner-1"


async def _watcher(backend: SqliteBackend, execution_id: str, first: asyncio.Event) -> None:
    async for _ in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
        first.set()  # the next step of this task runs into the stream's wait for a change


@pytest.mark.parametrize("steps", range(STEPS))
async def test_a_watch_cancelled_any_number_of_steps_after_a_write_ends(db_path, steps):
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend:
        await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id=RUNNER
            )
        )
        for trial in range(TRIALS_PER_STEP):
            first = asyncio.Event()
            task = asyncio.create_task(_watcher(backend, execution.id, first))
            await first.wait()
            await backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id,
                    phase=pb.ExecutionPhase.RUNNING,
                    runner_id=RUNNER,
                    message=f"progress {trial}",
                )
            )
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            # Ten seconds is a bound, not a pause: a task that honours the cancellation ends at once.
            done, _ = await asyncio.wait({task}, timeout=10)
            if not done:
                task.cancel()  # it is waiting again by now, where a cancellation is honoured
                await asyncio.wait({task}, timeout=10)
            assert done, f"trial {trial}: the watch cancelled {steps} steps after a write kept running"
            assert task.cancelled()
