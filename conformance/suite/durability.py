"""Durability: with `CAPABILITY_DURABLE_STORAGE`, everything acknowledged survives a restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stigmer_backend.conformance.client import BackendUnderTest, Client
from stigmer_backend.conformance.run import ConformanceRun
from stigmer_backend.conformance.scenarios import RUNNER, apply_agent, claim, create_execution, move
from stigmer_backend.gen.stigmer.backend import v1 as pb

pytestmark = [pytest.mark.requires_capability(pb.Capability.DURABLE_STORAGE), pytest.mark.requires_restart]
Phase = pb.ExecutionPhase


def test_state_survives_a_restart(
    client: Client, restart: Callable[[], BackendUnderTest] | None, stigmer_run: ConformanceRun, capabilities: set[int]
) -> None:
    """Agents, executions in every phase, versions and (with secrets) secret values are there after a restart."""
    agent = apply_agent(client)
    pending = create_execution(client, agent)
    running = claim(client, create_execution(client, agent))
    done = move(
        client, claim(client, create_execution(client, agent)), Phase.SUCCEEDED, output=pb.ExecutionOutput(text="ok")
    )
    secret_name = None
    if pb.Capability.SECRETS in capabilities:
        secret_name = "CF_DURABLE_" + agent.id[-8:].upper().replace("-", "_")
        client.put_secret(pb.PutSecretRequest(name=secret_name, value="survives-restart"))

    assert restart is not None  # marked requires_restart: skipped when the target cannot restart
    after = Client(restart(), stigmer_run.loop)
    try:
        got = after.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=agent.id)))
        assert got.agent_instance == agent
        for execution in (pending, running, done):
            assert after.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution == execution
        if secret_name:
            names = [s.name for s in after.list_secrets(pb.ListSecretsRequest(page_size=1000)).secrets]
            assert secret_name in names
            after.delete_secret(pb.DeleteSecretRequest(name=secret_name))
        context = after.get_execution_context(pb.GetExecutionContextRequest(execution_id=running.id, runner_id=RUNNER))
        assert context.execution == running
    finally:
        client.backend = after.backend  # the old connection is gone; clean up through the new one
