"""Round-trip fidelity: every field of every resource survives create/get/list, at its limits."""

from __future__ import annotations

import pytest

from stigmer_backend.conformance.client import Client, unique_name
from stigmer_backend.conformance.scenarios import (
    agent_of,
    claim,
    create_execution,
    create_time,
    end_time,
    execution_of,
    move,
    spec,
    start_time,
    status,
    update_time,
)
from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
MIB = 1_048_576
UNICODE = "naïve café — 日本語 — 🚀 — \u0000-free — ℵ"
STRUCT = {"text": UNICODE, "int": 42, "float": 0.125, "neg": -1e300, "yes": True, "no": False, "null": None,
          "list": [1, "two", [3], {"four": 4}], "nested": {"deeper": {"deepest": []}}, "empty_obj": {}, "": "empty key"}  # fmt: skip


def _agent_round_trip(
    client: Client, agent_spec: pb.AgentInstanceSpec, name: str | None = None
) -> tuple[pb.AgentInstance, pb.AgentInstance | None, list[pb.AgentInstance]]:
    name = name or unique_name()
    applied = agent_of(client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=agent_spec)))
    got = client.get_agent_instance(
        pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name))
    ).agent_instance
    listed: list[pb.AgentInstance] = []
    token = ""
    while True:
        page = client.list_agent_instances(pb.ListAgentInstancesRequest(page_size=1000, page_token=token))
        listed += [a for a in page.agent_instances if a.name == name]
        token = page.next_page_token
        if not token:
            break
    return applied, got, listed


SPECS = {
    "minimal": spec(instructions="", env=[]),
    "unicode": spec(instructions=UNICODE, env=[pb.EnvironmentVariable(name="GREETING", value=UNICODE)]),
    "empty-env-value": spec(env=[pb.EnvironmentVariable(name="EMPTY", value="")]),
    "full-model": spec(model=pb.ModelConfig(provider="openai", model="gpt-4o-mini", endpoint="https://llm.example.com:8443/v1?x=1", credentials="${.secrets.OPENAI_KEY}")),
    "references-everywhere": spec(env=[pb.EnvironmentVariable(name="A", value="${.secrets.A}${ .secrets.B }\t${.secrets.A} and ${literal}")]),
    "max-sizes": spec(
        instructions="i" * 262_144,
        model=pb.ModelConfig(provider="p" * 64, model="m" * 256, endpoint="https://h/" + "e" * 2038),
        env=[pb.EnvironmentVariable(name=("V" * 127) + str(i % 10) if i < 10 else f"V{i}", value="v" * 32_768 if i == 0 else str(i)) for i in range(256)],
    ),
}  # fmt: skip


class TestAgentInstanceFidelity:
    @pytest.mark.parametrize("case", list(SPECS), ids=list(SPECS))
    def test_spec_survives_apply_get_and_list(self, client: Client, case: str) -> None:
        """`AgentInstanceSpec` is stored exactly: unicode, empty strings, maximum sizes, references as written."""
        applied, got, listed = _agent_round_trip(client, SPECS[case])
        assert applied.spec == SPECS[case]
        assert got == applied and listed == [applied]

    def test_longest_name(self, client: Client) -> None:
        """A 63-character name is valid and kept."""
        name = ("a" + unique_name().replace("-", "") + "z" * 63)[:62] + "9"
        applied, got, listed = _agent_round_trip(client, spec(), name=name)
        assert got is not None and applied.name == got.name == name and listed == [applied]


INPUTS = {
    "unicode-message": pb.ExecutionInput(message=UNICODE),
    "struct-only": pb.ExecutionInput(data=Struct.from_dict(STRUCT)),
    "empty-struct": pb.ExecutionInput(message="m", data=Struct.from_dict({})),
    "max-message": pb.ExecutionInput(message="m" * MIB),
}


class TestExecutionFidelity:
    @pytest.mark.parametrize("case", list(INPUTS), ids=list(INPUTS))
    def test_input_survives_create_get_and_list(self, client: Client, case: str) -> None:
        """`ExecutionInput` is kept exactly, including an empty object and the maximum message size."""
        agent = agent_of(client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=unique_name(), spec=spec())))
        request = pb.CreateExecutionRequest(
            request_id=f"cf-fidelity-{unique_name()}",
            agent_instance=pb.AgentInstanceRef(id=agent.id),
            input=INPUTS[case],
        )
        created = execution_of(client.create_execution(request))
        got = client.get_execution(pb.GetExecutionRequest(execution_id=created.id)).execution
        listed = client.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id)).executions
        assert created.input == INPUTS[case]
        assert got == created and list(listed) == [created]

    def test_status_fields_survive(self, client: Client) -> None:
        """Message, output (text and structured), error with details: kept exactly at their limits."""
        running = claim(client, create_execution(client))
        output = pb.ExecutionOutput(text=UNICODE + "o" * 1000, data=Struct.from_dict(STRUCT))
        progress = move(client, running, Phase.RUNNING, message="é" * 2048, output=output)
        error = pb.ExecutionError(
            code="E" * 64, message="x" * 16_384, details={f"k{i}": "v" * 4096 for i in range(63)} | {"k" * 128: ""}
        )
        failed = move(client, progress, Phase.FAILED, error=error, message="")
        got = client.get_execution(pb.GetExecutionRequest(execution_id=running.id)).execution
        assert status(progress).message == "é" * 2048 and status(progress).output == output
        assert status(failed).error == error and status(failed).output == output
        assert got == failed

    def test_timestamps_are_ordered(self, client: Client) -> None:
        """`create_time` <= `start_time` <= `update_time`, `end_time` set at the end."""
        execution = create_execution(client)
        done = move(client, claim(client, execution), Phase.SUCCEEDED)
        assert create_time(execution) <= start_time(done) <= end_time(done) <= update_time(done), done.status
        assert done.create_time == execution.create_time
