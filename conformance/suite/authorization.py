"""Roles: people, runners and admins hold different credentials, and each is refused what its role may not do.

Runs against an endpoint reporting `CAPABILITY_ROLES`. The suite's own token
(`--stigmer-token-file`) must be an admin's; the other roles' credentials come
from the file named by `STIGMER_CONFORMANCE_ROLES`, lines `ROLE NAME TOKEN` as
`stigmer server --tokens-file` reads them, with at least one `person` and two
`runner` lines. Each refusal is `PERMISSION_DENIED` and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id, unique_name, unique_secret_name
from stigmer_backend.conformance.run import ConformanceRun
from stigmer_backend.conformance.scenarios import execution_of, spec
from stigmer_backend.gen.stigmer.backend import v1 as pb

pytestmark = pytest.mark.requires_capability(pb.Capability.ROLES)
ROLES_ENV = "STIGMER_CONFORMANCE_ROLES"


def _role_lines() -> dict[str, list[tuple[str, str]]]:
    path = os.environ.get(ROLES_ENV)
    if not path:
        pytest.skip(f"optional: {ROLES_ENV} names no file of role credentials")
    roles: dict[str, list[tuple[str, str]]] = {}
    for line in Path(path).read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) == 3:
            roles.setdefault(fields[0], []).append((fields[1], fields[2]))
    if not roles.get("person") or len(roles.get("runner", [])) < 2:
        pytest.skip(f"optional: {ROLES_ENV} must hold a person and two runners")
    return roles


class AsRole(Protocol):
    def __call__(self, role: str, index: int = 0) -> tuple[str, Client]: ...


@pytest.fixture
def as_role(stigmer_run: ConformanceRun) -> AsRole:
    """``as_role("person"|"runner", index)`` -> ``(name, Client)`` calling the target with that role's credential."""
    target = stigmer_run.target
    if target is None or target.as_caller(None) is None:
        pytest.skip("optional: role credentials are tested against an endpoint (host:port or --server-command)")
    roles = _role_lines()

    def connect(role: str, index: int = 0) -> tuple[str, Client]:
        name, token = roles[role][index]
        caller = target.as_caller(token)
        assert caller is not None  # an endpoint: checked above
        return name, Client(caller, stigmer_run.loop)

    return connect


def _keyed_spec(secret: str) -> pb.AgentInstanceSpec:
    return spec(model=pb.ModelConfig(provider="openai", model="gpt-4o", credentials=f"${{.secrets.{secret}}}"))


def _execution(client: Client, agent_spec: pb.AgentInstanceSpec | None = None) -> pb.Execution:
    name = unique_name()
    client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=agent_spec or spec()))
    return execution_of(
        client.create_execution(
            pb.CreateExecutionRequest(
                request_id=request_id(),
                agent_instance=pb.AgentInstanceRef(name=name),
                input=pb.ExecutionInput(message="hi"),
            )
        )
    )


class TestPeople:
    def test_a_person_may_not_put_or_delete_secrets(self, client: Client, as_role: AsRole) -> None:
        """`PutSecret`, `DeleteSecret`: `PERMISSION_DENIED` for a person; nothing stored."""
        _, person = as_role("person")
        name = unique_secret_name()
        with expect_status(Status.PERMISSION_DENIED):
            person.put_secret(pb.PutSecretRequest(name=name, value="not-stored"))
        assert name not in [s.name for s in client.list_secrets(pb.ListSecretsRequest(page_size=1000)).secrets]
        with expect_status(Status.PERMISSION_DENIED):
            person.delete_secret(pb.DeleteSecretRequest(name=name))

    def test_a_person_may_not_apply_an_agent_referencing_a_secret(self, client: Client, as_role: AsRole) -> None:
        """`ApplyAgentInstance`: only an admin may reference `${.secrets.NAME}`; `PERMISSION_DENIED`, nothing stored."""
        _, person = as_role("person")
        name = unique_name()
        with expect_status(Status.PERMISSION_DENIED):
            person.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=_keyed_spec("ANY_KEY")))
        with expect_status(Status.NOT_FOUND):
            client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name)))

    def test_a_person_may_not_claim_nor_read_a_context(self, client: Client, as_role: AsRole) -> None:
        """`UpdateExecutionStatus`, `GetExecutionContext` are for runners: `PERMISSION_DENIED` for a person."""
        person_name, person = as_role("person")
        execution = _execution(client)
        with expect_status(Status.PERMISSION_DENIED):
            person.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id=person_name
                )
            )
        with expect_status(Status.PERMISSION_DENIED):
            person.get_execution_context(
                pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=person_name)
            )
        now = execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)))
        assert now.version == execution.version


class TestRunners:
    def test_a_runner_may_not_act_as_another_runner(self, client: Client, as_role: AsRole) -> None:
        """`runner_id` must be the runner its credential names: `PERMISSION_DENIED` otherwise, nothing written."""
        first_name, first = as_role("runner", 0)
        _, second = as_role("runner", 1)
        execution = _execution(client)
        with expect_status(Status.PERMISSION_DENIED):
            second.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id=first_name
                )
            )
        first.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id=first_name
            )
        )
        with expect_status(Status.PERMISSION_DENIED):
            second.get_execution_context(pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=first_name))
        first.get_execution_context(pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=first_name))

    def test_a_runner_may_not_create_apply_or_touch_secrets(self, client: Client, as_role: AsRole) -> None:
        """`CreateExecution`, `ApplyAgentInstance`, `PutSecret`, `ListSecrets`: `PERMISSION_DENIED` for a runner."""
        _, runner = as_role("runner")
        agent = unique_name()
        client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent, spec=spec()))
        calls = [
            (
                "create_execution",
                pb.CreateExecutionRequest(
                    request_id=request_id(),
                    agent_instance=pb.AgentInstanceRef(name=agent),
                    input=pb.ExecutionInput(message="hi"),
                ),
            ),
            ("apply_agent_instance", pb.ApplyAgentInstanceRequest(name=unique_name(), spec=spec())),
            ("put_secret", pb.PutSecretRequest(name=unique_secret_name(), value="x")),
            ("list_secrets", pb.ListSecretsRequest()),
        ]
        for rpc, request in calls:
            with expect_status(Status.PERMISSION_DENIED):
                getattr(runner, rpc)(request)
