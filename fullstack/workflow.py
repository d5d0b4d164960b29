"""The Temporal workflow of one execution: its id is the execution id, its data identifiers only.

What Temporal stores in its history is the workflow input (``ExecutionRun``: the
execution id and the lease), each activity's input (the same) and result
(``ExecutionEnd``: the phase and the error code the backend recorded). None of
them holds a secret value, a resolved environment or even the model's answer:
the context (the only message with secret values) is fetched and used inside
one activity, ``run_execution``, and never leaves it.

Timeouts and retries, reconciled with the contract's lease:

- the activity's heartbeat timeout IS the lease; the activity heartbeats every
  third of it, as it renews the lease. A worker that dies stops both at once.
- a retry (a new attempt after the worker died, or after an error) never claims
  an execution an earlier attempt claimed: the contract fails an expired lease
  with ``LEASE_EXPIRED`` and never lets it be reclaimed. The new attempt follows
  the execution through ``WatchExecution`` until the backend ends it (FAILED
  ``LEASE_EXPIRED`` at the end of the dead attempt's lease) and returns that. Only
  an execution still PENDING (the dead attempt never claimed it) is claimed.
- cancelling the workflow cancels the activity and cancels the execution in the
  backend (``cancel_execution``), which the running activity sees through its
  watch at once; ``stigmer execution cancel`` does both.

This module is loaded in Temporal's workflow sandbox: it imports nothing but the
standard library and ``temporalio``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

__all__ = ["TASK_QUEUE", "WORKFLOW", "ExecutionCancel", "ExecutionEnd", "ExecutionRun", "ExecutionWorkflow"]

WORKFLOW = "StigmerExecution"
TASK_QUEUE = "stigmer-executions"

RUN_ACTIVITY = "run_execution"
CANCEL_ACTIVITY = "cancel_execution"

RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=20
)
"""Attempts of the run activity: after a dead worker or a backend briefly unreachable. Safe to repeat (see above)."""
LONGEST_RUN = timedelta(hours=6)
"""An upper bound only: the agent's own time limit (STIGMER_MODEL_TIMEOUT) ends a model call long before."""


@dataclass
class ExecutionRun:
    """The workflow's input and the run activity's: which execution, and the lease its claim takes."""

    execution_id: str
    lease_seconds: float = 30.0


@dataclass
class ExecutionEnd:
    """The run activity's result, and the workflow's: the phase the backend recorded, and its error code if any."""

    execution_id: str
    phase: str
    error_code: str = ""
    attempt: int = 1


@dataclass
class ExecutionCancel:
    """The cancel activity's input."""

    execution_id: str
    reason: str


@workflow.defn(name=WORKFLOW)
class ExecutionWorkflow:
    @workflow.run
    async def run(self, run: ExecutionRun) -> ExecutionEnd:
        try:
            end: ExecutionEnd = await workflow.execute_activity(
                RUN_ACTIVITY,
                run,
                result_type=ExecutionEnd,
                start_to_close_timeout=LONGEST_RUN,
                heartbeat_timeout=timedelta(seconds=run.lease_seconds),
                retry_policy=RETRIES,
                cancellation_type=workflow.ActivityCancellationType.TRY_CANCEL,
            )
            return end
        except asyncio.CancelledError:
            # Cancelled in Temporal (``stigmer execution cancel``, the UI): the backend learns it too.
            cancel = ExecutionCancel(run.execution_id, "the Temporal workflow was cancelled")
            await workflow.execute_activity(
                CANCEL_ACTIVITY, cancel, start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRIES
            )
            raise
