"""The workflow's activities: the runner's unit of work through ``BackendService``.

``run_execution`` claims the execution, fetches its context and calls the model
in one step and reports (``stigmer_backend.runner.executor``), so secret values stay
inside this process: the activity's input and result are identifiers and a
phase (see ``workflow``). It heartbeats every third of the lease, as the
executor renews the lease, so Temporal's heartbeat timeout (the lease) and the
backend's lease expiry find a dead worker at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from grpclib import GRPCError
from grpclib.const import Status
from temporalio import activity

from stigmer_backend.backends.rules.truncation import fit_status_message
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner.executor import run_execution

from .workflow import CANCEL_ACTIVITY, RUN_ACTIVITY, ExecutionCancel, ExecutionEnd, ExecutionRun

__all__ = ["ExecutionActivities"]

Phase = pb.ExecutionPhase
ENDED = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


class ExecutionActivities:
    """The activities of one worker, over its backend (a ``CloudBackend`` to the stack's ``stigmer server``)."""

    def __init__(
        self, backend: pb.BackendServiceBase, runner_id: str, on_status: Callable[[str], None] | None = None
    ) -> None:
        self.backend = backend
        self.runner_id = runner_id
        self._say = on_status or (lambda text: None)

    @activity.defn(name=RUN_ACTIVITY)
    async def run_execution(self, run: ExecutionRun) -> ExecutionEnd:
        """Runs the execution to its end, or follows it there if an earlier attempt claimed it."""
        lease = timedelta(seconds=run.lease_seconds)
        beats = asyncio.ensure_future(_heartbeats(lease.total_seconds() / 3))
        try:
            final = await self._run(run.execution_id, lease)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
        assert final.status is not None  # every stored execution has its status
        error = final.status.error.code if final.status.error else ""
        return ExecutionEnd(final.id, final.status.phase.name, error, activity.info().attempt)

    async def _run(self, execution_id: str, lease: timedelta) -> pb.Execution:
        execution = (await self.backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
        assert execution is not None and execution.status is not None  # GetExecution answers with it or fails
        if execution.status.phase == Phase.PENDING:
            try:
                return await run_execution(
                    self.backend,
                    execution,
                    runner_id=self.runner_id,
                    lease=lease,
                    on_status=self._say,
                    cancel_reason=f"the Temporal activity on {self.runner_id} was cancelled",
                )
            except GRPCError as error:
                if error.status not in (Status.ABORTED, Status.FAILED_PRECONDITION):
                    raise
                # Claimed meanwhile (an attempt that Temporal thought lost), or cancelled: follow it.
        # Claimed by an earlier attempt (its worker died?): never reclaimed; its lease decides.
        self._say(f"{execution_id}: claimed before this attempt; following it to its end (never reclaimed)")
        return await _followed(self.backend, execution_id)

    @activity.defn(name=CANCEL_ACTIVITY)
    async def cancel_execution(self, cancel: ExecutionCancel) -> None:
        """Cancels the execution in the backend; an execution that already ended is left as it is."""
        request = pb.CancelExecutionRequest(execution_id=cancel.execution_id, reason=fit_status_message(cancel.reason))
        try:
            await self.backend.cancel_execution(request)
        except GRPCError as error:
            if error.status not in (Status.FAILED_PRECONDITION, Status.NOT_FOUND):
                raise


async def _heartbeats(every: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every)


async def _followed(backend: pb.BackendServiceBase, execution_id: str) -> pb.Execution:
    """The execution once it ended, followed with ``WatchExecution`` (it wakes at a lease's expiry)."""
    while True:
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            execution = response.execution
            assert execution is not None and execution.status is not None  # every event carries it
            if execution.status.phase in ENDED:
                return execution
        await asyncio.sleep(0.5)  # the watch ended without an end (a server restarting): look again
