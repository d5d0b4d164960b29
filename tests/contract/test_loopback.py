"""The generated server base and client stub meet over a real loopback socket."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.server import Server

import stigmer_backend.gen.stigmer.backend.v1 as pb
from tests.builders import AGENT, SPEC, apply_request


class TinyBackend(pb.BackendServiceBase):
    """Three RPCs over a dict; everything else keeps the base's UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.agents: dict[str, pb.AgentInstance] = {}

    async def get_backend_info(self, message: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        return pb.GetBackendInfoResponse(contract_version="1.0", backend_kind="tiny")

    async def apply_agent_instance(self, message: pb.ApplyAgentInstanceRequest) -> pb.ApplyAgentInstanceResponse:
        agent = pb.AgentInstance(id=f"agi-{len(self.agents) + 1}", name=message.name, spec=message.spec, version=1)
        self.agents[message.name] = agent
        return pb.ApplyAgentInstanceResponse(agent_instance=agent, outcome=pb.ApplyOutcome.CREATED)

    async def get_agent_instance(self, message: pb.GetAgentInstanceRequest) -> pb.GetAgentInstanceResponse:
        if message.agent_instance.name not in self.agents:
            raise GRPCError(Status.NOT_FOUND, f"agent instance {message.agent_instance.name!r} not found")
        return pb.GetAgentInstanceResponse(agent_instance=self.agents[message.agent_instance.name])

    async def watch_execution(self, message: pb.WatchExecutionRequest) -> AsyncIterator[pb.WatchExecutionResponse]:
        for version, phase in enumerate([pb.ExecutionPhase.PENDING, pb.ExecutionPhase.CANCELLED], start=1):
            status = pb.ExecutionStatus(phase=phase)
            yield pb.WatchExecutionResponse(
                execution=pb.Execution(id=message.execution_id, version=version, status=status)
            )


@pytest.fixture
async def client():
    server = Server([TinyBackend()])
    # IPPROTO_TCP, not create_server's 0: asyncio then sets TCP_NODELAY (no 40 ms delayed-ACK stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # the server owns and closes it
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    await server.start(sock=sock)
    channel = Channel("127.0.0.1", sock.getsockname()[1])
    yield pb.BackendServiceStub(channel)
    channel.close()
    server.close()
    await server.wait_closed()


async def test_unary_calls_round_trip(client):
    applied = await client.apply_agent_instance(apply_request())
    fetched = await client.get_agent_instance(
        pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=AGENT))
    )
    info = await client.get_backend_info(pb.GetBackendInfoRequest())

    assert applied.outcome == pb.ApplyOutcome.CREATED
    assert fetched.agent_instance == applied.agent_instance
    assert fetched.agent_instance.spec == SPEC
    assert (info.contract_version, info.backend_kind) == ("1.0", "tiny")


async def test_errors_cross_the_wire_with_their_status_code(client):
    request = pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="missing"))
    with pytest.raises(GRPCError) as caught:
        await client.get_agent_instance(request)
    assert caught.value.status == Status.NOT_FOUND
    assert "missing" in caught.value.message


async def test_rpcs_a_backend_does_not_override_answer_unimplemented(client):
    with pytest.raises(GRPCError) as caught:
        await client.get_execution(pb.GetExecutionRequest(execution_id="x"))
    assert caught.value.status == Status.UNIMPLEMENTED


async def test_server_streaming_delivers_every_message_in_order(client):
    states = [r.execution async for r in client.watch_execution(pb.WatchExecutionRequest(execution_id="exe-1"))]
    assert [(e.id, e.version, e.status.phase) for e in states] == [
        ("exe-1", 1, pb.ExecutionPhase.PENDING),
        ("exe-1", 2, pb.ExecutionPhase.CANCELLED),
    ]
