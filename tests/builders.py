"""Valid requests and error capture that many tests need, built one way.

A test that needs *a* valid agent or execution takes it from here, so a
change to what "valid" means (a new required field, say) is made once.
"""

from __future__ import annotations

import pytest
from grpclib import GRPCError

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["AGENT", "SPEC", "apply_request", "create_request", "failure"]

AGENT = "helper"
SPEC = pb.AgentInstanceSpec(instructions="be brief", model=pb.ModelConfig(provider="ollama", model="llama3"))
"""A valid agent instance spec with no secret reference."""


def apply_request(name: str = AGENT, spec: pb.AgentInstanceSpec = SPEC) -> pb.ApplyAgentInstanceRequest:
    return pb.ApplyAgentInstanceRequest(name=name, spec=spec)


def create_request(request_id: str, message: str = "hi", agent: str = AGENT) -> pb.CreateExecutionRequest:
    """A CreateExecution of the agent instance named ``agent`` (apply it first)."""
    return pb.CreateExecutionRequest(
        request_id=request_id, agent_instance=pb.AgentInstanceRef(name=agent), input=pb.ExecutionInput(message=message)
    )


async def failure(coroutine) -> GRPCError:
    """The ``GRPCError`` that awaiting ``coroutine`` raises; fails the test if it raises none."""
    with pytest.raises(GRPCError) as caught:
        await coroutine
    return caught.value
