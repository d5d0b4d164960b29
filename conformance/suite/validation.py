"""INVALID_ARGUMENT for every documented limit and pattern, naming the field, writing nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Unpack, cast

import betterproto2
import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id, unique_name
from stigmer_backend.conformance.scenarios import (
    RUNNER,
    SpecFields,
    StatusFields,
    apply_agent,
    execution_of,
    spec,
    spec_of,
    status,
)
from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
MIB = 1_048_576
AGENT = pb.AgentInstanceRef(name="cf-validation-agent")
INPUT = pb.ExecutionInput(message="hi")
EXE = "exe_validation_target"
LONG_ID = "e" * 65


# Values no `ExecutionPhase` defines, on purpose: the wire carries any number.
UNDEFINED_42 = cast(pb.ExecutionPhase, 42)
UNDEFINED_99 = cast(pb.ExecutionPhase, 99)


def _create(
    request_id: str = "cf-valid-id",
    agent_instance: pb.AgentInstanceRef | None = AGENT,
    input: pb.ExecutionInput | None = INPUT,
) -> tuple[str, pb.CreateExecutionRequest]:
    request = pb.CreateExecutionRequest(request_id=request_id, agent_instance=agent_instance, input=input)
    return ("create_execution", request)


def _update(
    execution_id: str = EXE,
    phase: pb.ExecutionPhase = Phase.RUNNING,
    runner_id: str = RUNNER,
    **fields: Unpack[StatusFields],
) -> tuple[str, pb.UpdateExecutionStatusRequest]:
    request = pb.UpdateExecutionStatusRequest(execution_id=execution_id, phase=phase, runner_id=runner_id, **fields)
    return ("update_execution_status", request)


def _apply(name: str = "cf-valid-name", **spec_fields: Unpack[SpecFields]) -> tuple[str, pb.ApplyAgentInstanceRequest]:
    return ("apply_agent_instance", pb.ApplyAgentInstanceRequest(name=name, spec=spec(**spec_fields)))


def _model(**fields: str) -> pb.ModelConfig:
    values = {"provider": "openai", "model": "gpt-4o"}
    values.update(fields)
    return pb.ModelConfig(**values)


def _env(*pairs: tuple[str, str]) -> list[pb.EnvironmentVariable]:
    return [pb.EnvironmentVariable(name=n, value=v) for n, v in pairs]


def _big_struct(size: int) -> Struct:
    return Struct.from_dict({"blob": "x" * size})


def _deep_struct(depth: int) -> Struct:
    """A struct whose objects nest ``depth`` deep, the struct itself counting as 1."""
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return Struct.from_dict(value)


def _struct_of_encoded_size(size: int) -> Struct:
    """A struct of exactly ``size`` bytes in binary encoding: one string, shortened by the encoding's overhead
    (for a large ``size`` the length prefixes are as long for the shorter string)."""
    overhead = len(bytes(Struct.from_dict({"blob": "x" * size}))) - size
    struct = Struct.from_dict({"blob": "x" * (size - overhead)})
    assert len(bytes(struct)) == size, f"built {len(bytes(struct))} bytes, not {size}"
    return struct


# (case id, (rpc, request), field the message must name)
CASES = [
    ("CreateExecution/request_id-missing", _create(request_id=""), "request_id"),
    ("CreateExecution/request_id-with-space", _create(request_id="a b"), "request_id"),
    ("CreateExecution/request_id-129-chars", _create(request_id="r" * 129), "request_id"),
    ("CreateExecution/agent_instance-missing", _create(agent_instance=None), "agent_instance"),
    ("CreateExecution/agent_instance-empty-ref", _create(agent_instance=pb.AgentInstanceRef()), "agent_instance"),
    ("CreateExecution/agent_instance-bad-name", _create(agent_instance=pb.AgentInstanceRef(name="Bad_Name")), "name"),
    ("CreateExecution/input-missing", _create(input=None), "input"),
    ("CreateExecution/input-empty", _create(input=pb.ExecutionInput()), "message"),
    ("CreateExecution/input.message-over-1MiB", _create(input=pb.ExecutionInput(message="m" * (MIB + 1))), "message"),
    ("CreateExecution/input.data-over-1MiB", _create(input=pb.ExecutionInput(data=_big_struct(MIB))), "data"),
    ("GetExecution/execution_id-missing", ("get_execution", pb.GetExecutionRequest()), "execution_id"),
    ("GetExecution/execution_id-65-chars", ("get_execution", pb.GetExecutionRequest(execution_id="e" * 65)), "execution_id"),
    ("ListExecutions/page_size-negative", ("list_executions", pb.ListExecutionsRequest(page_size=-1)), "page_size"),
    ("ListExecutions/phases-unspecified", ("list_executions", pb.ListExecutionsRequest(phases=[Phase.UNSPECIFIED])), "phases"),
    ("ListExecutions/phases-undefined", ("list_executions", pb.ListExecutionsRequest(phases=[Phase.RUNNING, UNDEFINED_99])), "phases"),
    ("ListExecutions/page_token-garbage", ("list_executions", pb.ListExecutionsRequest(page_token="not!a!token")), "page_token"),
    ("UpdateExecutionStatus/execution_id-missing", _update(execution_id=""), "execution_id"),
    ("UpdateExecutionStatus/phase-unspecified", _update(phase=Phase.UNSPECIFIED), "phase"),
    ("UpdateExecutionStatus/phase-undefined", _update(phase=UNDEFINED_42), "phase"),
    ("UpdateExecutionStatus/runner_id-missing", _update(runner_id=""), "runner_id"),
    ("UpdateExecutionStatus/runner_id-with-slash", _update(runner_id="a/b"), "runner_id"),
    ("UpdateExecutionStatus/expected_version-negative", _update(expected_version=-1), "expected_version"),
    ("UpdateExecutionStatus/message-over-4096-bytes", _update(message="é" * 2049), "message"),
    ("UpdateExecutionStatus/error-missing-for-FAILED", _update(phase=Phase.FAILED), "error"),
    ("UpdateExecutionStatus/error-with-SUCCEEDED", _update(phase=Phase.SUCCEEDED, error=pb.ExecutionError(code="X")), "error"),
    ("UpdateExecutionStatus/error.code-lower-case", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="oops")), "code"),
    ("UpdateExecutionStatus/error.message-over-16KiB", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="X", message="m" * 16385)), "message"),
    ("UpdateExecutionStatus/error.details-65-entries", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="X", details={str(i): "" for i in range(65)})), "details"),
    ("UpdateExecutionStatus/output.text-over-1MiB", _update(output=pb.ExecutionOutput(text="t" * (MIB + 1))), "text"),
    ("UpdateExecutionStatus/lease_duration-with-SUCCEEDED", _update(phase=Phase.SUCCEEDED, lease_duration=timedelta(seconds=30)), "lease_duration"),
    ("UpdateExecutionStatus/lease_duration-under-1s", _update(lease_duration=timedelta(milliseconds=500)), "lease_duration"),
    ("UpdateExecutionStatus/lease_duration-over-24h", _update(lease_duration=timedelta(hours=24, seconds=1)), "lease_duration"),
    ("CancelExecution/execution_id-missing", ("cancel_execution", pb.CancelExecutionRequest()), "execution_id"),
    ("CancelExecution/reason-over-4096-bytes", ("cancel_execution", pb.CancelExecutionRequest(execution_id=EXE, reason="r" * 4097)), "reason"),
    ("CancelExecution/expected_version-negative", ("cancel_execution", pb.CancelExecutionRequest(execution_id=EXE, expected_version=-3)), "expected_version"),
    ("GetExecutionContext/execution_id-missing", ("get_execution_context", pb.GetExecutionContextRequest(runner_id=RUNNER)), "execution_id"),
    ("GetExecutionContext/runner_id-missing", ("get_execution_context", pb.GetExecutionContextRequest(execution_id=EXE)), "runner_id"),
    ("GetAgentInstance/agent_instance-missing", ("get_agent_instance", pb.GetAgentInstanceRequest()), "agent_instance"),
    ("GetAgentInstance/agent_instance.name-invalid", ("get_agent_instance", pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="-x"))), "name"),
    ("ApplyAgentInstance/name-missing", _apply(name=""), "name"),
    ("ApplyAgentInstance/name-upper-case", _apply(name="Helper"), "name"),
    ("ApplyAgentInstance/name-64-chars", _apply(name="a" * 64), "name"),
    ("ApplyAgentInstance/name-trailing-hyphen", _apply(name="helper-"), "name"),
    ("ApplyAgentInstance/name-leading-digit", _apply(name="1helper"), "name"),
    ("ApplyAgentInstance/spec-missing", ("apply_agent_instance", pb.ApplyAgentInstanceRequest(name="cf-x")), "spec"),
    ("ApplyAgentInstance/spec.model-missing", _apply(model=None), "model"),
    ("ApplyAgentInstance/spec.model.provider-missing", _apply(model=_model(provider="")), "provider"),
    ("ApplyAgentInstance/spec.model.provider-invalid", _apply(model=_model(provider="Open AI")), "provider"),
    ("ApplyAgentInstance/spec.model.model-missing", _apply(model=_model(model="")), "model"),
    ("ApplyAgentInstance/spec.model.model-257-bytes", _apply(model=_model(model="m" * 257)), "model"),
    ("ApplyAgentInstance/spec.model.model-control-char", _apply(model=_model(model="gpt\n4")), "model"),
    ("ApplyAgentInstance/spec.model.endpoint-not-http", _apply(model=_model(endpoint="ftp://models.example")), "endpoint"),
    ("ApplyAgentInstance/spec.model.endpoint-relative", _apply(model=_model(endpoint="/v1/chat")), "endpoint"),
    ("ApplyAgentInstance/spec.model.endpoint-2049-bytes", _apply(model=_model(endpoint="https://h/" + "p" * 2039)), "endpoint"),
    ("ApplyAgentInstance/spec.model.credentials-literal", _apply(model=_model(credentials="sk-live-123")), "credentials"),
    ("ApplyAgentInstance/spec.model.credentials-not-alone", _apply(model=_model(credentials="Bearer ${.secrets.KEY}")), "credentials"),
    ("ApplyAgentInstance/spec.instructions-over-256KiB", _apply(instructions="i" * 262_145), "instructions"),
    ("ApplyAgentInstance/spec.env-257-entries", _apply(env=_env(*((f"V{i}", "") for i in range(257)))), "env"),
    ("ApplyAgentInstance/spec.env.name-invalid", _apply(env=_env(("1BAD", "x"))), "name"),
    ("ApplyAgentInstance/spec.env.name-duplicate", _apply(env=_env(("A", "1"), ("A", "2"))), "name"),
    ("ApplyAgentInstance/spec.env.value-over-32KiB", _apply(env=_env(("A", "v" * 32_769))), "value"),
    ("ApplyAgentInstance/spec.env.value-malformed-reference", _apply(env=_env(("A", "${.secrets.}"))), "value"),
    ("ApplyAgentInstance/spec.env.value-bad-secret-name", _apply(env=_env(("A", "${ .secrets.bad-name }"))), "value"),
    ("ListAgentInstances/page_size-negative", ("list_agent_instances", pb.ListAgentInstancesRequest(page_size=-5)), "page_size"),
    ("ListAgentInstances/page_token-garbage", ("list_agent_instances", pb.ListAgentInstancesRequest(page_token="%%%")), "page_token"),
    ("DeleteAgentInstance/agent_instance-missing", ("delete_agent_instance", pb.DeleteAgentInstanceRequest()), "agent_instance"),
    # Identifiers: 1 to 64 printable ASCII characters, on every RPC that takes one.
    ("GetExecution/execution_id-not-printable", ("get_execution", pb.GetExecutionRequest(execution_id="exe\x01")), "execution_id"),
    ("GetExecution/execution_id-not-ascii", ("get_execution", pb.GetExecutionRequest(execution_id="exé")), "execution_id"),
    ("UpdateExecutionStatus/execution_id-65-chars", _update(execution_id=LONG_ID), "execution_id"),
    ("CancelExecution/execution_id-65-chars", ("cancel_execution", pb.CancelExecutionRequest(execution_id=LONG_ID)), "execution_id"),
    ("GetExecutionContext/execution_id-65-chars", ("get_execution_context", pb.GetExecutionContextRequest(execution_id=LONG_ID, runner_id=RUNNER)), "execution_id"),
    ("ListExecutions/agent_instance_id-65-chars", ("list_executions", pb.ListExecutionsRequest(agent_instance_id=LONG_ID)), "agent_instance_id"),
    ("CreateExecution/agent_instance.id-65-chars", _create(agent_instance=pb.AgentInstanceRef(id=LONG_ID)), "id"),
    ("GetAgentInstance/agent_instance.id-65-chars", ("get_agent_instance", pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=LONG_ID))), "id"),
    ("DeleteAgentInstance/agent_instance.id-65-chars", ("delete_agent_instance", pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=LONG_ID))), "id"),
    ("DeleteAgentInstance/agent_instance.name-invalid", ("delete_agent_instance", pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="No"))), "name"),
    # Every other documented bound, one past it.
    ("CreateExecution/request_id-bad-char", _create(request_id="id/1"), "request_id"),
    ("UpdateExecutionStatus/runner_id-129-chars", _update(runner_id="r" * 129), "runner_id"),
    ("UpdateExecutionStatus/error.code-65-chars", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="E" * 65)), "code"),
    ("UpdateExecutionStatus/error.code-leading-digit", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="9X")), "code"),
    ("UpdateExecutionStatus/error.details-key-129-bytes", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="X", details={"k" * 129: ""})), "details"),
    ("UpdateExecutionStatus/error.details-key-empty", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="X", details={"": "v"})), "details"),
    ("UpdateExecutionStatus/error.details-value-4097-bytes", _update(phase=Phase.FAILED, error=pb.ExecutionError(code="X", details={"k": "v" * 4097})), "details"),
    ("UpdateExecutionStatus/output.data-over-1MiB", _update(output=pb.ExecutionOutput(data=_big_struct(MIB))), "data"),
    ("CreateExecution/input.data-33-deep", _create(input=pb.ExecutionInput(data=_deep_struct(33))), "data"),
    ("UpdateExecutionStatus/output.data-33-deep", _update(output=pb.ExecutionOutput(data=_deep_struct(33))), "data"),
    ("ListExecutions/phases-17-entries", ("list_executions", pb.ListExecutionsRequest(phases=[Phase.RUNNING] * 17)), "phases"),
    ("UpdateExecutionStatus/lease_duration-with-CANCELLED", _update(phase=Phase.CANCELLED, lease_duration=timedelta(seconds=30)), "lease_duration"),
    ("UpdateExecutionStatus/error-with-RUNNING", _update(error=pb.ExecutionError(code="X")), "error"),
    ("GetExecutionContext/runner_id-129-chars", ("get_execution_context", pb.GetExecutionContextRequest(execution_id=EXE, runner_id="r" * 129)), "runner_id"),
    ("ApplyAgentInstance/spec.model.provider-65-chars", _apply(model=_model(provider="p" * 65)), "provider"),
    ("ApplyAgentInstance/spec.model.provider-upper-case", _apply(model=_model(provider="OpenAI")), "provider"),
    ("ApplyAgentInstance/spec.model.endpoint-no-host", _apply(model=_model(endpoint="https://")), "endpoint"),
    ("ApplyAgentInstance/spec.env.name-129-chars", _apply(env=_env(("V" * 129, "x"))), "name"),
    ("ApplyAgentInstance/spec.env.value-unclosed-reference", _apply(env=_env(("A", "${ .secrets.TOKEN"))), "value"),
    ("ApplyAgentInstance/spec.model.credentials-two-references", _apply(model=_model(credentials="${.secrets.A}${.secrets.B}")), "credentials"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_request(client: Client, call: tuple[str, betterproto2.Message], field: str) -> None:
    """The first invalid field: INVALID_ARGUMENT, with a message naming it."""
    rpc, request = call
    with expect_status(Status.INVALID_ARGUMENT, naming=field):
        getattr(client, rpc)(request)


class TestBoundsAreInclusive:
    def test_the_longest_request_and_runner_ids(self, client: Client) -> None:
        """`request_id` and `runner_id` of 128 characters (every allowed character) are valid."""
        agent = apply_agent(client)
        rid = ("cf-" + request_id() + "._:-" + "R" * 128)[:128]
        runner = ("Runner.9_:-" + "r" * 128)[:128]
        execution = execution_of(
            client.create_execution(
                pb.CreateExecutionRequest(request_id=rid, agent_instance=pb.AgentInstanceRef(id=agent.id), input=INPUT)
            )
        )
        assert execution.request_id == rid
        running = execution_of(
            client.update_execution_status(
                pb.UpdateExecutionStatusRequest(execution_id=execution.id, phase=Phase.RUNNING, runner_id=runner)
            )
        )
        assert status(running).runner_id == runner
        context = client.get_execution_context(pb.GetExecutionContextRequest(execution_id=running.id, runner_id=runner))
        assert context.execution == running

    def test_the_shortest_and_longest_leases(self, client: Client) -> None:
        """`lease_duration` of exactly 1 second and exactly 24 hours are valid."""
        agent = apply_agent(client)
        for duration in (timedelta(seconds=1), timedelta(hours=24)):
            execution = execution_of(
                client.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=request_id(), agent_instance=pb.AgentInstanceRef(id=agent.id), input=INPUT
                    )
                )
            )
            running = execution_of(
                client.update_execution_status(
                    pb.UpdateExecutionStatusRequest(
                        execution_id=execution.id, phase=Phase.RUNNING, runner_id=RUNNER, lease_duration=duration
                    )
                )
            )
            assert status(running).phase == Phase.RUNNING

    def test_the_largest_cancel_reason_and_output(self, client: Client) -> None:
        """A 4,096-byte cancellation reason and a 1,048,576-byte output text are valid and kept."""
        agent = apply_agent(client)
        ref = pb.AgentInstanceRef(id=agent.id)
        pending = client.create_execution(
            pb.CreateExecutionRequest(request_id=request_id(), agent_instance=ref, input=INPUT)
        )
        reason = "r" * 4095 + "."
        cancelled = client.cancel_execution(
            pb.CancelExecutionRequest(execution_id=execution_of(pending).id, reason=reason)
        )
        assert status(execution_of(cancelled)).message == reason
        other = client.create_execution(
            pb.CreateExecutionRequest(request_id=request_id(), agent_instance=ref, input=INPUT)
        )
        running = execution_of(
            client.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution_of(other).id, phase=Phase.RUNNING, runner_id=RUNNER
                )
            )
        )
        output = pb.ExecutionOutput(text="t" * MIB)
        done = execution_of(
            client.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=running.id, phase=Phase.SUCCEEDED, runner_id=RUNNER, output=output
                )
            )
        )
        assert status(done).output == output

    def test_the_deepest_and_largest_structured_data(self, client: Client) -> None:
        """`input.data` and `output.data` nested exactly 32 deep, or of exactly 1,048,576 bytes encoded, are valid
        and kept; and `phases` may hold 16 entries."""
        agent = apply_agent(client)
        for data in (_deep_struct(32), _struct_of_encoded_size(MIB)):
            created = execution_of(
                client.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=request_id(),
                        agent_instance=pb.AgentInstanceRef(id=agent.id),
                        input=pb.ExecutionInput(data=data),
                    )
                )
            )
            assert created.input == pb.ExecutionInput(data=data)
            output = pb.ExecutionOutput(data=data)
            running = execution_of(
                client.update_execution_status(
                    pb.UpdateExecutionStatusRequest(
                        execution_id=created.id, phase=Phase.RUNNING, runner_id=RUNNER, output=output
                    )
                )
            )
            assert status(running).output == output
        listed = client.list_executions(
            pb.ListExecutionsRequest(agent_instance_id=agent.id, phases=[Phase.RUNNING] * 16)
        )
        assert len(listed.executions) == 2

    def test_env_names_are_case_sensitive(self, client: Client) -> None:
        """`A` and `a` are two variables, not a duplicate name."""
        variables = _env(("TOKEN", "1"), ("token", "2"), ("Token", "3"))
        agent = apply_agent(client, spec(env=variables))
        assert list(spec_of(agent).env) == variables


class TestNothingIsWritten:
    def test_an_invalid_apply_creates_nothing(self, client: Client) -> None:
        """A rejected `ApplyAgentInstance` leaves the name unused."""
        name = unique_name()
        with expect_status(Status.INVALID_ARGUMENT):
            client.apply_agent_instance(
                pb.ApplyAgentInstanceRequest(name=name, spec=spec(model=_model(credentials="x")))
            )
        with expect_status(Status.NOT_FOUND):
            client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name)))

    def test_an_invalid_update_of_an_existing_agent_changes_nothing(self, client: Client) -> None:
        """A rejected apply of an existing name keeps the stored spec and version."""
        agent = apply_agent(client)
        with expect_status(Status.INVALID_ARGUMENT):
            client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=spec(env=_env(("9", "")))))
        assert (
            client.get_agent_instance(
                pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=agent.id))
            ).agent_instance
            == agent
        )

    def test_an_invalid_create_does_not_use_up_its_request_id(self, client: Client) -> None:
        """A rejected create writes nothing: the same `request_id` later creates normally."""
        agent = apply_agent(client)
        rid = request_id()
        ref = pb.AgentInstanceRef(name=agent.name)
        with expect_status(Status.INVALID_ARGUMENT):
            client.create_execution(
                pb.CreateExecutionRequest(request_id=rid, agent_instance=ref, input=pb.ExecutionInput())
            )
        response = client.create_execution(pb.CreateExecutionRequest(request_id=rid, agent_instance=ref, input=INPUT))
        assert response.created
