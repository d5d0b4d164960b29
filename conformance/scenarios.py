"""Named scenarios the suite builds on: valid resources and executions in each phase.

Each helper creates what its name says through the tracked ``Client`` (so it
is cleaned up) with unique names, and returns the backend's response.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypedDict, TypeVar, Unpack

from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

from .client import Client, present, request_id, unique_name

__all__ = [
    "OTHER_RUNNER", "RUNNER", "InputFields", "SpecFields", "StatusFields", "agent_of", "apply_agent", "claim",
    "create_execution", "create_time", "end_time", "execution_in", "execution_of", "lease_end", "move", "spec",
    "spec_of", "start_time", "status", "update_time", "wait_for_backend_clock",
]  # fmt: skip

RUNNER = "cf-runner-a"
OTHER_RUNNER = "cf-runner-b"
Phase = pb.ExecutionPhase
T = TypeVar("T")


class SpecFields(TypedDict, total=False):
    instructions: str
    model: pb.ModelConfig | None
    env: list[pb.EnvironmentVariable]


class InputFields(TypedDict, total=False):
    data: Struct | None


class StatusFields(TypedDict, total=False):
    expected_version: int
    message: str
    output: pb.ExecutionOutput | None
    error: pb.ExecutionError | None
    lease_duration: timedelta | None


def spec(**overrides: Unpack[SpecFields]) -> pb.AgentInstanceSpec:
    """A valid spec; keyword arguments replace fields."""
    values: SpecFields = {
        "instructions": "You are a careful assistant.",
        "model": pb.ModelConfig(provider="ollama", model="llama3"),
        "env": [pb.EnvironmentVariable(name="LOG_LEVEL", value="info")],
    }
    values.update(overrides)
    return pb.AgentInstanceSpec(**values)


def apply_agent(
    client: Client, agent_spec: pb.AgentInstanceSpec | None = None, name: str | None = None
) -> pb.AgentInstance:
    request = pb.ApplyAgentInstanceRequest(name=name or unique_name(), spec=agent_spec or spec())
    return _returned(client.apply_agent_instance(request).agent_instance, "ApplyAgentInstanceResponse.agent_instance")


def create_execution(
    client: Client, agent: pb.AgentInstance | None = None, message: str = "hello", **input_fields: Unpack[InputFields]
) -> pb.Execution:
    agent = agent or apply_agent(client)
    request = pb.CreateExecutionRequest(
        request_id=request_id(),
        agent_instance=pb.AgentInstanceRef(name=agent.name),
        input=pb.ExecutionInput(message=message, **input_fields),
    )
    return _returned(client.create_execution(request).execution, "CreateExecutionResponse.execution")


def claim(
    client: Client, execution: pb.Execution, runner: str = RUNNER, lease: timedelta | None = None
) -> pb.Execution:
    request = pb.UpdateExecutionStatusRequest(
        execution_id=execution.id,
        phase=Phase.RUNNING,
        runner_id=runner,
        expected_version=execution.version,
        lease_duration=lease,
    )
    return _returned(client.update_execution_status(request).execution, "UpdateExecutionStatusResponse.execution")


def move(
    client: Client, execution: pb.Execution, to: pb.ExecutionPhase, runner: str = RUNNER, **fields: Unpack[StatusFields]
) -> pb.Execution:
    """``UpdateExecutionStatus`` to ``to`` as ``runner``, with an error when ``to`` is FAILED."""
    if to == Phase.FAILED and "error" not in fields:
        fields["error"] = pb.ExecutionError(code="AGENT_FAILED", message="the agent gave up")
    request = pb.UpdateExecutionStatusRequest(execution_id=execution.id, phase=to, runner_id=runner, **fields)
    return _returned(client.update_execution_status(request).execution, "UpdateExecutionStatusResponse.execution")


def status(execution: pb.Execution) -> pb.ExecutionStatus:
    """``execution.status``, failing (not crashing) when the backend left it unset."""
    return present(execution.status, "Execution.status", "the execution's phase and progress, always set")


class CarriesExecution(Protocol):
    @property
    def execution(self) -> pb.Execution | None: ...


def execution_of(response: CarriesExecution) -> pb.Execution:
    """``response.execution``, failing (not crashing) when the backend left it unset."""
    return _returned(response.execution, f"{type(response).__name__}.execution")


class CarriesAgentInstance(Protocol):
    @property
    def agent_instance(self) -> pb.AgentInstance | None: ...


def agent_of(response: CarriesAgentInstance) -> pb.AgentInstance:
    """``response.agent_instance``, failing (not crashing) when the backend left it unset."""
    return _returned(response.agent_instance, f"{type(response).__name__}.agent_instance")


def spec_of(agent: pb.AgentInstance) -> pb.AgentInstanceSpec:
    """``agent.spec``, failing (not crashing) when the backend left it unset."""
    return present(agent.spec, "AgentInstance.spec", "the spec as applied, always set")


def lease_end(execution: pb.Execution) -> datetime:
    """``lease_expire_time`` of a RUNNING execution, failing (not crashing) when the backend left it unset."""
    return present(
        status(execution).lease_expire_time,
        "ExecutionStatus.lease_expire_time",
        "while EXECUTION_PHASE_RUNNING, the instant at which the runner's lease ends unless renewed",
    )


class Timestamped(Protocol):
    """A resource with the contract's times: `Execution`, `AgentInstance`, `Secret`."""

    @property
    def create_time(self) -> datetime | None: ...
    @property
    def update_time(self) -> datetime | None: ...


def create_time(resource: Timestamped) -> datetime:
    return present(resource.create_time, f"{type(resource).__name__}.create_time", "when it was created")


def update_time(resource: Timestamped) -> datetime:
    return present(resource.update_time, f"{type(resource).__name__}.update_time", "when it last changed")


def start_time(execution: pb.Execution) -> datetime:
    return present(
        status(execution).start_time, "ExecutionStatus.start_time", "when the execution entered EXECUTION_PHASE_RUNNING"
    )


def end_time(execution: pb.Execution) -> datetime:
    return present(
        status(execution).end_time, "ExecutionStatus.end_time", "when the execution entered its terminal phase"
    )


def wait_for_backend_clock(client: Client, instant: datetime, timeout: float = 15.0) -> None:
    """Returns once the backend's clock is past ``instant``, read from the time of throwaway writes.

    The backend's own clock decides timestamps and lease expiry; the suite's may differ.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        probe = create_execution(client, message="clock probe")
        cancelled = _returned(
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=probe.id)).execution,
            "CancelExecutionResponse.execution",
        )
        if update_time(cancelled) > instant:
            return
        assert time.monotonic() < deadline, f"the backend's clock did not pass {instant} within {timeout} s"
        time.sleep(0.02)


def execution_in(client: Client, phase: pb.ExecutionPhase, agent: pb.AgentInstance | None = None) -> pb.Execution:
    """A new execution driven to ``phase`` along legal transitions."""
    execution = create_execution(client, agent)
    if phase == Phase.PENDING:
        return execution
    if phase == Phase.CANCELLED:
        request = pb.CancelExecutionRequest(execution_id=execution.id, reason="test")
        return _returned(client.cancel_execution(request).execution, "CancelExecutionResponse.execution")
    execution = claim(client, execution)
    if phase == Phase.RUNNING:
        return execution
    return move(client, execution, phase)


def _returned(resource: T | None, field: str) -> T:
    return present(resource, field, "the response carries the resource the call wrote or read")
