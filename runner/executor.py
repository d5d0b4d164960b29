"""Running one execution: claim it, hold its lease, call the model, report the outcome.

This is the runner's side of the contract, and where the just-in-time secret
design is kept: the context (with secret values) is fetched after the claim,
values are resolved into the model request only as it is built, and every
status, output and error goes through the context's ``Masker`` before it is
reported or printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from datetime import timedelta

from grpclib import GRPCError
from grpclib.const import Status

from stigmer.backends.rules.validation import MAX_TOKEN_CHARS
from stigmer.gen.stigmer.backend import v1 as pb

from .masking import Masker
from .providers import ModelCallFailed, provider_for

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
) -> pb.Execution:
    """Claims ``execution`` (at its version) and runs it to a terminal phase; returns its final state.

    Raises ``GRPCError`` ``ABORTED``/``FAILED_PRECONDITION`` if another runner
    claimed it first. If the execution is cancelled (or the lease lost) while
    the model works, the call is abandoned and the final state is returned.
    """
    runner_id = runner_id or default_runner_id()
    say = on_status or (lambda text: None)
    claim = pb.UpdateExecutionStatusRequest(
        execution_id=execution.id,
        phase=Phase.RUNNING,
        runner_id=runner_id,
        expected_version=execution.version,
        lease_duration=lease,
        message="claimed",
    )
    execution = (await backend.update_execution_status(claim)).execution
    say(f"{execution.id}: running as {runner_id}")
    try:
        context = await backend.get_execution_context(
            pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=runner_id)
        )
    except GRPCError as error:
        return await _report(
            backend, execution.id, runner_id, Masker([]), _failure("CONTEXT_UNAVAILABLE", error.message or "")
        )
    masker = Masker.from_context(context)
    spec = context.agent_instance.spec
    say(f"{execution.id}: calling {spec.model.provider}/{spec.model.model}")

    work = asyncio.ensure_future(_complete(spec, context))
    renewals = asyncio.ensure_future(_renew(backend, execution.id, runner_id, lease))
    done, _ = await asyncio.wait({work, renewals}, return_when=asyncio.FIRST_COMPLETED)
    renewals.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await renewals
    if work not in done:  # the lease was lost or the execution cancelled: stop working on it
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        final = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution
        say(f"{execution.id}: stopped, the execution is {Phase(final.status.phase).name}")
        return final
    update = work.result()
    return await _report(backend, execution.id, runner_id, masker, update)


async def _complete(
    spec: pb.AgentInstanceSpec, context: pb.GetExecutionContextResponse
) -> pb.UpdateExecutionStatusRequest:
    try:
        output = await provider_for(spec.model.provider).complete(spec, context.execution.input, context.secrets)
    except ModelCallFailed as failure:
        return _failure(failure.code, str(failure))
    except Exception as error:  # an agent failure must end FAILED, not leave the execution to its lease
        return _failure("RUNNER_ERROR", f"{type(error).__name__}: {error}")
    return pb.UpdateExecutionStatusRequest(phase=Phase.SUCCEEDED, output=output, message="done")


def _failure(code: str, message: str) -> pb.UpdateExecutionStatusRequest:
    error = pb.ExecutionError(code=code, message=message[:16_000])
    return pb.UpdateExecutionStatusRequest(phase=Phase.FAILED, error=error, message="failed")


async def _renew(backend: pb.BackendServiceBase, execution_id: str, runner_id: str, lease: timedelta) -> None:
    """Renews the lease every third of its length; returns when it can no longer be renewed."""
    while True:
        await asyncio.sleep(lease.total_seconds() / 3)
        request = pb.UpdateExecutionStatusRequest(
            execution_id=execution_id, phase=Phase.RUNNING, runner_id=runner_id, lease_duration=lease, message="working"
        )
        try:
            await backend.update_execution_status(request)
        except GRPCError as error:
            if error.status in (Status.FAILED_PRECONDITION, Status.NOT_FOUND):
                return
            # Transient trouble: keep trying until the lease is really gone.


async def _report(
    backend: pb.BackendServiceBase,
    execution_id: str,
    runner_id: str,
    masker: Masker,
    update: pb.UpdateExecutionStatusRequest,
) -> pb.Execution:
    update = masker.mask_message(update)
    update.execution_id, update.runner_id = execution_id, runner_id
    try:
        return (await backend.update_execution_status(update)).execution
    except GRPCError as error:
        if error.status != Status.FAILED_PRECONDITION:
            raise
        return (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
