"""The execution state machine and lease, as ``ExecutionPhase`` documents them.

Pure functions from (stored execution, validated request, now) to the
execution to store, or a ``GRPCError``. Adapters load, call, and write the
result in the same transaction; they never decide a transition themselves.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from stigmer_backend.gen.stigmer.backend import v1 as pb

from . import errors

__all__ = [
    "DEFAULT_LEASE",
    "LEASE_EXPIRED",
    "TERMINAL_PHASES",
    "TRANSITIONS",
    "cancel",
    "expire_lease",
    "is_retry_of",
    "lease_expired",
    "new_execution",
    "require_retry_of",
    "status_of",
    "update_status",
]

Phase = pb.ExecutionPhase

TRANSITIONS = frozenset(
    {
        (Phase.PENDING, Phase.RUNNING),
        (Phase.PENDING, Phase.CANCELLED),
        (Phase.RUNNING, Phase.RUNNING),
        (Phase.RUNNING, Phase.SUCCEEDED),
        (Phase.RUNNING, Phase.FAILED),
        (Phase.RUNNING, Phase.CANCELLED),
    }
)
"""Every legal (from, to) pair; anything else is ``FAILED_PRECONDITION``."""

TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})
DEFAULT_LEASE = timedelta(seconds=60)
LEASE_EXPIRED = "LEASE_EXPIRED"


def phase_name(phase: int) -> str:
    try:
        return Phase(phase).betterproto_value_to_renamed_proto_names()[phase]
    except ValueError:
        return str(phase)


def status_of(execution: pb.Execution) -> pb.ExecutionStatus:
    """The status of a stored execution: ``new_execution`` gives it one and every write replaces it."""
    status = execution.status
    assert status is not None, f"execution {execution.id} has no status"
    return status


def new_execution(
    execution_id: str, request: pb.CreateExecutionRequest, agent: pb.AgentInstance, now: datetime
) -> pb.Execution:
    return pb.Execution(
        id=execution_id,
        agent_instance_id=agent.id,
        agent_instance_name=agent.name,
        input=request.input,
        status=pb.ExecutionStatus(phase=Phase.PENDING),
        version=1,
        request_id=request.request_id,
        create_time=now,
        update_time=now,
    )


def is_retry_of(execution: pb.Execution, request: pb.CreateExecutionRequest) -> bool:
    """Whether ``request`` repeats the one that created ``execution``."""
    ref = request.agent_instance
    assert ref is not None, "validate_create_execution requires agent_instance"
    same_agent = (
        execution.agent_instance_id == ref.id if ref.id is not None else execution.agent_instance_name == ref.name
    )
    return same_agent and execution.input == request.input


def require_retry_of(execution: pb.Execution, request: pb.CreateExecutionRequest) -> None:
    """Refuses ``request`` with ``ALREADY_EXISTS`` unless it repeats the one that created ``execution``.

    Call it with the execution already stored under the request's ``request_id``.
    """
    if not is_retry_of(execution, request):
        raise errors.already_exists(
            f"request_id {request.request_id!r} was already used for a different execution request"
        )


def lease_expired(execution: pb.Execution, now: datetime) -> bool:
    status = status_of(execution)
    return status.phase == Phase.RUNNING and status.lease_expire_time is not None and status.lease_expire_time <= now


def expire_lease(execution: pb.Execution, now: datetime) -> pb.Execution | None:
    """The execution failed for its expired lease, or None if the lease holds."""
    if not lease_expired(execution, now):
        return None
    status = status_of(execution)
    expired = pb.ExecutionStatus(
        phase=Phase.FAILED,
        message=f"runner {status.runner_id!r} stopped renewing its lease",
        output=status.output,
        error=pb.ExecutionError(
            code=LEASE_EXPIRED,
            message=f"the lease of runner {status.runner_id!r} expired before the execution finished",
        ),
        runner_id=status.runner_id,
        start_time=status.start_time,
        end_time=status.lease_expire_time,
    )
    return _written(execution, expired, now)


def _written(execution: pb.Execution, status: pb.ExecutionStatus, now: datetime) -> pb.Execution:
    return dataclasses.replace(execution, status=status, version=execution.version + 1, update_time=now)


def _check_version(execution: pb.Execution, expected: int) -> None:
    if expected and expected != execution.version:
        raise errors.aborted(f"execution {execution.id} is at version {execution.version}, not the expected {expected}")


def _check_transition(execution: pb.Execution, to: int) -> None:
    current = status_of(execution).phase
    if (current, to) in TRANSITIONS:
        return
    if current in TERMINAL_PHASES:
        reason = f"is {phase_name(current)}, a terminal phase"
    else:
        reason = f"cannot move from {phase_name(current)}"
    raise errors.failed_precondition(f"execution {execution.id} {reason}: {phase_name(to)} is not allowed")


def update_status(execution: pb.Execution, request: pb.UpdateExecutionStatusRequest, now: datetime) -> pb.Execution:
    """The execution after a validated ``UpdateExecutionStatus``.

    ``execution`` must already have had ``expire_lease`` applied.
    """
    _check_version(execution, request.expected_version)
    _check_transition(execution, request.phase)
    current = status_of(execution)
    if current.phase == Phase.RUNNING and current.runner_id != request.runner_id:
        raise errors.failed_precondition(
            f"execution {execution.id} is held by another runner; only {current.runner_id!r} may update it"
        )
    status = pb.ExecutionStatus(
        phase=request.phase,
        message=request.message,
        output=request.output if request.output is not None else current.output,
        error=request.error,
        runner_id=request.runner_id if request.phase == Phase.RUNNING else current.runner_id,
        start_time=current.start_time or (now if request.phase == Phase.RUNNING else None),
    )
    if request.phase == Phase.RUNNING:
        status.lease_expire_time = now + (request.lease_duration or DEFAULT_LEASE)
    else:
        status.end_time = now
    return _written(execution, status, now)


def cancel(execution: pb.Execution, request: pb.CancelExecutionRequest, now: datetime) -> pb.Execution:
    """The execution after a validated ``CancelExecution``."""
    _check_version(execution, request.expected_version)
    _check_transition(execution, Phase.CANCELLED)
    current = status_of(execution)
    status = pb.ExecutionStatus(
        phase=Phase.CANCELLED,
        message=request.reason,
        output=current.output,
        runner_id=current.runner_id,
        start_time=current.start_time,
        end_time=now,
    )
    return _written(execution, status, now)
