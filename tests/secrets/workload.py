"""Agents, executions and secrets to exercise a backend with, as the secrets tests need them."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from stigmer_backend.backends.encryption import MasterKeySource
from stigmer_backend.gen.stigmer.backend import v1 as pb

RUNNER = "runner-1"


def file_source(home: Path, environ: Mapping[str, str] | None = None) -> MasterKeySource:
    """Key lookup as on a headless machine: the variable (from ``environ`` only), then ``home/master.key``."""
    return MasterKeySource(home, environ=dict(environ or {}), keychain=None)


def random_key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def agent_spec(*, credentials: str = "", env: Mapping[str, str] | None = None) -> pb.AgentInstanceSpec:
    return pb.AgentInstanceSpec(
        instructions="You help.",
        model=pb.ModelConfig(provider="openai", model="gpt-4o", credentials=credentials),
        env=[pb.EnvironmentVariable(name=name, value=value) for name, value in (env or {}).items()],
    )


async def apply_agent(backend, name: str, spec: pb.AgentInstanceSpec) -> pb.AgentInstance:
    response = await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=spec))
    return response.agent_instance


async def running_execution(backend, agent_name: str, runner: str = RUNNER) -> pb.Execution:
    """A new execution of ``agent_name``, claimed by ``runner``."""
    created = await backend.create_execution(
        pb.CreateExecutionRequest(
            request_id=str(uuid.uuid4()),
            agent_instance=pb.AgentInstanceRef(name=agent_name),
            input=pb.ExecutionInput(message="go"),
        )
    )
    claimed = await backend.update_execution_status(
        pb.UpdateExecutionStatusRequest(
            execution_id=created.execution.id,
            phase=pb.ExecutionPhase.RUNNING,
            runner_id=runner,
            lease_duration=timedelta(minutes=5),
        )
    )
    return claimed.execution


async def context_of(backend, execution: pb.Execution, runner: str = RUNNER) -> pb.GetExecutionContextResponse:
    return await backend.get_execution_context(
        pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=runner)
    )


async def put(backend, name: str, value: str) -> pb.PutSecretResponse:
    return await backend.put_secret(pb.PutSecretRequest(name=name, value=value))


async def values_of(db, names: list[str]) -> dict[str, str]:
    """The values given to a running execution of a new agent whose environment references ``names``."""
    agent = f"agent-{len(names)}-{os.urandom(3).hex()}"
    await apply_agent(db, agent, agent_spec(env={name: f"${{.secrets.{name}}}" for name in names}))
    return dict((await context_of(db, await running_execution(db, agent))).secrets)
