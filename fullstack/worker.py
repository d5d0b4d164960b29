"""A Tier 2 worker: a Temporal worker that runs executions' activities over a ``BackendService``.

``stigmer local start`` starts N of them (``stigmer local worker``); each polls
the stack's task queue and runs up to ``concurrency`` activities at once. SIGTERM
stops polling and gives running activities ``grace`` seconds; an activity still
running then is cancelled, which cancels its execution with a reason.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from stigmer_backend.gen.stigmer.backend import v1 as pb

from .activities import ExecutionActivities
from .workflow import TASK_QUEUE, ExecutionWorkflow

__all__ = ["serve"]


async def serve(
    backend: pb.BackendServiceBase,
    temporal_address: str,
    *,
    runner_id: str,
    namespace: str = "default",
    task_queue: str = TASK_QUEUE,
    concurrency: int = 4,
    grace: float = 30.0,
    on_status: Callable[[str], None] | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT."""
    say = on_status or (lambda text: None)
    client = await Client.connect(temporal_address, namespace=namespace)
    activities = ExecutionActivities(backend, runner_id, say)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[ExecutionWorkflow],
        activities=[activities.run_execution, activities.cancel_execution],
        max_concurrent_activities=concurrency,
        # No sticky workflow cache: after a worker dies, a cached workflow's next task would wait on
        # that worker's own queue for the sticky timeout (10 s) first. The workflow is two activity
        # calls, so replaying it from history on each task costs next to nothing.
        max_cached_workflows=0,
        graceful_shutdown_timeout=timedelta(seconds=grace),
        identity=runner_id,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with worker:
        say(f"worker {runner_id} polling {task_queue} on {temporal_address}")
        await stopping.wait()
        say(f"worker {runner_id} stopping")
    say(f"worker {runner_id} stopped")
