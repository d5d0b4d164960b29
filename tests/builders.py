"""Valid requests and error capture that many tests need, built one way.

A test that needs *a* valid agent or execution takes it from here, so a
change to what "valid" means (a new required field, say) is made once; so
does a change to what a user error looks like (``one_line_error``).
"""

from __future__ import annotations

import subprocess

import pytest
from click.testing import Result
from grpclib import GRPCError

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["AGENT", "SPEC", "apply_request", "create_request", "failure", "one_line_error"]

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


def one_line_error(result: Result | subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one line a failed ``stigmer`` command printed, ``Error: `` and all.

    Fails the test on another exit code, a traceback, more than one line on
    stderr, or a line that is not click's ``Error: ...``. ``result`` comes from
    click's ``CliRunner`` or from a real process.
    """
    returncode = result.exit_code if isinstance(result, Result) else result.returncode
    assert returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]
