"""``GetExecutionContext``: who may see which secrets, and the resolved environment."""

from __future__ import annotations

from collections.abc import Mapping

from stigmer_backend.gen.stigmer.backend import v1 as pb

from . import errors, secret_refs
from .executions import phase_name, status_of

__all__ = ["build", "check_holder", "referenced_secrets"]


def referenced_secrets(spec: pb.AgentInstanceSpec | None) -> list[str]:
    """Every secret name ``spec`` references (environment and credentials), in order; none without a spec."""
    names: list[str] = []
    if spec is None:
        return names
    texts = [variable.value for variable in spec.env]
    if spec.model is not None:
        texts.append(spec.model.credentials)
    for text in texts:
        for name in secret_refs.find(text):
            if name not in names:
                names.append(name)
    return names


def check_holder(execution: pb.Execution, runner_id: str) -> None:
    """Only the lease holder of a running execution may have its context.

    ``execution`` must already have had its lease expiry applied.
    """
    status = status_of(execution)
    if status.phase != pb.ExecutionPhase.RUNNING:
        raise errors.failed_precondition(
            f"execution {execution.id} is {phase_name(status.phase)}; "
            "its context is given only while it is EXECUTION_PHASE_RUNNING"
        )
    if status.runner_id != runner_id:
        raise errors.failed_precondition(f"execution {execution.id} is held by another runner")


def build(
    execution: pb.Execution, snapshot: pb.AgentInstance, secrets: Mapping[str, str]
) -> pb.GetExecutionContextResponse:
    """The context, given the values of (at least) the referenced secrets.

    A referenced secret missing from ``secrets`` is ``FAILED_PRECONDITION``
    naming it; secrets not referenced are never included.
    """
    names = referenced_secrets(snapshot.spec)
    missing = [name for name in names if name not in secrets]
    if missing:
        raise errors.failed_precondition(
            f"agent instance {snapshot.name!r} references secrets that do not exist: {', '.join(missing)}"
        )
    values = {name: secrets[name] for name in names}
    variables = [] if snapshot.spec is None else snapshot.spec.env
    environment = {variable.name: secret_refs.substitute(variable.value, values) for variable in variables}
    return pb.GetExecutionContextResponse(
        execution=execution, agent_instance=snapshot, environment=environment, secrets=values
    )
