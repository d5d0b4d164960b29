"""The runner's steps: one execution through the contract, as four calls.

    claimed = await claim(backend, execution, runner_id, lease)
    # ... renew(backend, execution_id, runner_id, lease) every third of the lease, while:
    outcome = await call_model(backend, execution_id, runner_id, lease=lease, on_text=print)
    final = await report(backend, execution_id, runner_id, outcome)

``stigmer_backend.runner.executor`` drives them in one process (``agent execute``,
``runner start``); a Temporal workflow can drive the same steps as
activities (Tier 2), with the execution id as the workflow id.

The rule that keeps secrets in: ``call_model`` fetches the execution context
(the only message that carries secret values) and calls the model in ONE
step, and returns only the report it built, already masked. Secret values
never cross a step boundary, so they never become a Temporal activity
input or result (which Temporal writes to its history), a queue message or a
log line. Do not split the context fetch from the model call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.rules.truncation import fit_error_message, fit_output_text, fit_status_message
from stigmer_backend.gen.stigmer.backend import v1 as pb

from .masking import Masker
from .providers import CallBudget, ModelCallFailed, provider_for, timeout_of
from .resolver import UnresolvedReference

__all__ = ["call_model", "claim", "failure", "renew", "report"]

Phase = pb.ExecutionPhase


async def claim(
    backend: pb.BackendServiceBase, execution: pb.Execution, runner_id: str, lease: timedelta
) -> pb.Execution:
    """Moves ``execution`` from PENDING to RUNNING for ``runner_id``, compare-and-set on its version.

    Exactly one of any number of runners claiming the same version wins; the
    others get ``GRPCError`` ``ABORTED`` (the version moved) or
    ``FAILED_PRECONDITION`` (no longer PENDING).
    """
    request = pb.UpdateExecutionStatusRequest(
        execution_id=execution.id,
        phase=Phase.RUNNING,
        runner_id=runner_id,
        expected_version=execution.version,
        lease_duration=lease,
        message=fit_status_message(f"claimed by {runner_id}"),
    )
    return _answered((await backend.update_execution_status(request)).execution)


async def renew(
    backend: pb.BackendServiceBase, execution_id: str, runner_id: str, lease: timedelta
) -> pb.Execution | None:
    """Extends the lease (the heartbeat); None once ``runner_id`` no longer holds the execution.

    It is no longer held when it was cancelled, its lease expired, or it
    ended: the caller must stop working on it. Other errors (a backend that
    is briefly unreachable) are raised, and the caller may try again while
    the lease lasts.
    """
    request = pb.UpdateExecutionStatusRequest(
        execution_id=execution_id,
        phase=Phase.RUNNING,
        runner_id=runner_id,
        lease_duration=lease,
        message=fit_status_message(f"claimed by {runner_id}"),
    )
    try:
        return (await backend.update_execution_status(request)).execution
    except GRPCError as error:
        if error.status in (Status.FAILED_PRECONDITION, Status.NOT_FOUND):
            return None
        raise


async def call_model(
    backend: pb.BackendServiceBase,
    execution_id: str,
    runner_id: str,
    *,
    lease: timedelta,
    on_text: Callable[[str], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> pb.UpdateExecutionStatusRequest:
    """Fetches the context and calls the model, in one step; returns the masked terminal report.

    :param on_text: receives the answer as it streams, masked: a secret split
        across two pieces is held back until it can be masked whole.
    :param on_status: receives a line, masked, before each retry of the model call.

    The result is a SUCCEEDED or FAILED ``UpdateExecutionStatusRequest``
    (without ids) whose every string went through the context's ``Masker``
    and fits the contract's limits. It holds no secret value, so it may be
    stored, logged or passed to another process. Cancelling the task aborts
    the model call at once (the HTTP connection is closed).
    """
    try:
        context = await backend.get_execution_context(
            pb.GetExecutionContextRequest(execution_id=execution_id, runner_id=runner_id)
        )
    except GRPCError as error:
        return failure("CONTEXT_UNAVAILABLE", f"{error.status.name}: {error.message or ''}")
    masker = Masker.from_context(context)
    agent, execution = context.agent_instance, context.execution
    if agent is None or agent.spec is None or agent.spec.model is None or execution is None:
        return failure(
            "CONTEXT_UNAVAILABLE", "the execution context lacks its agent instance, spec, model or execution"
        )
    stream = _MaskedStream(masker, on_text)
    spec, model = agent.spec, agent.spec.model
    try:
        budget = CallBudget(timeout_of(spec), max_wait=lease.total_seconds())
        provider = provider_for(model.provider)
        given = execution.input or pb.ExecutionInput()
        retrying = None if on_status is None else _retry_lines(execution_id, masker, on_status)
        output = await provider.complete(spec, given, context.secrets, on_text=stream, budget=budget, on_retry=retrying)
        outcome = pb.UpdateExecutionStatusRequest(phase=Phase.SUCCEEDED, output=output, message="done")
    except ModelCallFailed as failed:
        outcome = failure(failed.code, str(failed))
    except UnresolvedReference as unresolved:
        outcome = failure("SECRET_UNRESOLVED", str(unresolved))
    except Exception as error:  # an agent failure must end FAILED, not leave the execution to its lease
        outcome = failure("RUNNER_ERROR", f"{type(error).__name__}: {error}")
    stream.close()
    return _fitted(masker.mask_message(outcome))


def _retry_lines(execution_id: str, masker: Masker, say: Callable[[str], None]) -> Callable[[str], None]:
    return lambda line: say(masker.mask(f"{execution_id}: {line}"))


def failure(code: str, message: str) -> pb.UpdateExecutionStatusRequest:
    """A FAILED report with ``ExecutionError(code, message)``; call it with masked or secret-free text."""
    error = pb.ExecutionError(code=code, message=message)
    return pb.UpdateExecutionStatusRequest(phase=Phase.FAILED, error=error, message="failed")


def _fitted(outcome: pb.UpdateExecutionStatusRequest) -> pb.UpdateExecutionStatusRequest:
    """Shortened to the contract's byte limits after masking (masking first: a cut value would escape the mask)."""
    outcome.message = fit_status_message(outcome.message)
    if outcome.error is not None:
        outcome.error.message = fit_error_message(outcome.error.message)
    if outcome.output is not None:
        outcome.output.text = fit_output_text(outcome.output.text)
    return outcome


async def report(
    backend: pb.BackendServiceBase, execution_id: str, runner_id: str, outcome: pb.UpdateExecutionStatusRequest
) -> pb.Execution:
    """Reports ``outcome`` (from ``call_model``) and returns the execution as it ends.

    Text longer than the contract allows is shortened (by UTF-8 bytes, on a
    character boundary). If the execution was cancelled or its lease expired meanwhile, the
    backend's state stands and is returned. If the backend refuses the report
    itself (``INVALID_ARGUMENT``: an output too large for it, say), a FAILED
    report naming why is sent instead, so the execution never stays RUNNING.
    """
    outcome = _fitted(outcome)
    outcome.execution_id, outcome.runner_id = execution_id, runner_id
    try:
        return _answered((await backend.update_execution_status(outcome)).execution)
    except GRPCError as error:
        if error.status == Status.INVALID_ARGUMENT and outcome.phase == Phase.SUCCEEDED:
            refused = failure("REPORT_REJECTED", fit_error_message(f"the backend refused the result: {error.message}"))
            with contextlib.suppress(GRPCError):
                return await report(backend, execution_id, runner_id, refused)
        elif error.status != Status.FAILED_PRECONDITION:
            raise
    return _answered((await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution)


def _answered(execution: pb.Execution | None) -> pb.Execution:
    """The execution a response carries: the contract answers with it or fails, never without it."""
    if execution is None:
        raise GRPCError(Status.INTERNAL, "the backend answered without the execution")
    return execution


class _MaskedStream:
    """Passes streamed text on masked, holding back what a later piece could turn into a secret."""

    def __init__(self, masker: Masker, sink: Callable[[str], None] | None) -> None:
        self._masker = masker
        self._sink = sink
        self._held = ""

    def __call__(self, text: str) -> None:
        if self._sink is None:
            return
        settled, self._held = self._masker.mask_settled(self._held + text)
        if settled:
            self._sink(settled)

    def close(self) -> None:
        if self._sink is not None and self._held:
            self._sink(self._masker.mask(self._held))
        self._held = ""
