"""Running one execution in this process: the steps of ``runner.steps``, with its lease and cancellation.

While the model works, two watchers run beside it: the lease renewal (every
third of the lease) and a ``WatchExecution`` stream, which sees a cancel
from any process within the backend's watch latency (SQLite: ~20 ms; a
server: as it pushes). Either one stopping means the execution is no longer
ours: the model call is cancelled at once, which closes its HTTP connection.

If the caller cancels ``run_execution`` itself (Ctrl-C, a timeout, a runner
shutting down), the model call is aborted and the execution is cancelled
with ``cancel_reason``, so it never stays RUNNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from grpclib import GRPCError

from stigmer_backend.backends.rules.truncation import fit_status_message
from stigmer_backend.backends.rules.validation import MAX_TOKEN_CHARS
from stigmer_backend.gen.stigmer.backend import v1 as pb

from . import steps

__all__ = ["default_runner_id", "run_execution"]

Phase = pb.ExecutionPhase


def default_runner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:MAX_TOKEN_CHARS].replace("/", "-")


async def run_execution(
    backend: pb.BackendServiceBase,
    execution: pb.Execution,
    *,
    runner_id: str | None = None,
    lease: timedelta = timedelta(seconds=30),
    on_status: Callable[[str], None] | None = None,
    on_text: Callable[[str], None] | None = None,
    cancel_reason: str | Callable[[], str] = "the runner stopped",
) -> pb.Execution:
    """Claims ``execution`` (at its version) and runs it to a terminal phase; returns its final state.

    :param on_status: receives one line per step, for people (no secret values).
    :param on_text: receives the model's answer as it streams, masked.
    :param cancel_reason: the reason stored if this coroutine is cancelled
        while it holds the execution (or a function giving it, asked then).

    Raises ``GRPCError`` ``ABORTED``/``FAILED_PRECONDITION`` if another runner
    claimed it first. If the execution is cancelled elsewhere (or the lease
    lost) while the model works, the call is aborted and the final state is
    returned.
    """
    runner_id = runner_id or default_runner_id()
    say = on_status or (lambda text: None)
    execution = await steps.claim(backend, execution, runner_id, lease)
    say(f"{execution.id}: running as {runner_id}")
    work = asyncio.ensure_future(
        steps.call_model(backend, execution.id, runner_id, lease=lease, on_text=on_text, on_status=say)
    )
    held = asyncio.ensure_future(_while_held(backend, execution.id, runner_id, lease))
    try:
        await asyncio.wait({work, held}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _stop(work, held)
        reason = cancel_reason() if callable(cancel_reason) else cancel_reason
        await asyncio.shield(_cancel(backend, execution.id, runner_id, reason))
        raise
    if not work.done():  # cancelled elsewhere, or the lease lost: stop working on it now
        await _stop(work, held)
        stopped = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution
        assert stopped is not None and stopped.status is not None  # GetExecution answers with it or fails
        say(f"{execution.id}: stopped, the execution is {stopped.status.phase.name}")
        return stopped
    await _stop(held)
    final = await steps.report(backend, execution.id, runner_id, work.result())
    assert final.status is not None  # every stored execution has its status
    error = f" {final.status.error.code}" if final.status.error else ""
    say(f"{execution.id}: {final.status.phase.name}{error}")
    return final


async def _while_held(backend: pb.BackendServiceBase, execution_id: str, runner_id: str, lease: timedelta) -> None:
    """Returns as soon as ``runner_id`` no longer holds the execution; renews its lease meanwhile."""
    renewals = asyncio.ensure_future(_renew(backend, execution_id, runner_id, lease))
    watch = asyncio.ensure_future(_until_released(backend, execution_id, runner_id))
    try:
        await asyncio.wait({renewals, watch}, return_when=asyncio.FIRST_COMPLETED)
        if watch.done() and watch.exception() is not None:
            await renewals  # the watch broke (a server restarting): the renewals still tell
    finally:
        await _stop(renewals, watch)


async def _renew(backend: pb.BackendServiceBase, execution_id: str, runner_id: str, lease: timedelta) -> None:
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        try:
            if await steps.renew(backend, execution_id, runner_id, lease) is None:
                return
        except GRPCError:
            pass  # transient trouble: keep trying until the lease is really gone


async def _until_released(backend: pb.BackendServiceBase, execution_id: str, runner_id: str) -> None:
    async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
        assert response.execution is not None and response.execution.status is not None  # every event carries it
        status = response.execution.status
        if status.phase != Phase.RUNNING or status.runner_id != runner_id:
            return


async def _cancel(backend: pb.BackendServiceBase, execution_id: str, runner_id: str, reason: str) -> None:
    """Ends the held execution CANCELLED, reported as its lease holder.

    Not ``CancelExecution``: on a server with roles a runner's credential may only report the
    executions it holds (SECURITY.md), and the holder's own report is what the state machine
    expects of a runner that stops. A refusal means it already ended: nothing to undo.
    """
    request = pb.UpdateExecutionStatusRequest(
        execution_id=execution_id, phase=Phase.CANCELLED, runner_id=runner_id, message=fit_status_message(reason)
    )
    with contextlib.suppress(GRPCError):
        await backend.update_execution_status(request)


async def _stop(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
