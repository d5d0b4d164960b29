"""CloudBackend and ``stigmer server`` both let upb write and read the bytes (``stigmer_backend.backends.codec``)."""

from __future__ import annotations

import pytest

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.codec import ContractCodec
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.backend_server import BackendServer
from stigmer_backend.server.startup import listening_socket


@pytest.fixture
def codec_calls(monkeypatch):
    """Every ``ContractCodec`` encode and decode in this process, as (direction, message type name).

    The server's request reader hands the codec the message it parsed to check (``decode_parsed``):
    a decode too.
    """
    calls: list[tuple[str, str]] = []
    encode, decode, decode_parsed = ContractCodec.encode, ContractCodec.decode, ContractCodec.decode_parsed

    def spying_encode(self, message, message_type):
        calls.append(("encode", message_type.__name__))
        return encode(self, message, message_type)

    def spying_decode(self, data, message_type):
        calls.append(("decode", message_type.__name__))
        return decode(self, data, message_type)

    def spying_decode_parsed(parsed, message_type):
        calls.append(("decode", message_type.__name__))
        return decode_parsed(parsed, message_type)

    monkeypatch.setattr(ContractCodec, "encode", spying_encode)
    monkeypatch.setattr(ContractCodec, "decode", spying_decode)
    monkeypatch.setattr(ContractCodec, "decode_parsed", staticmethod(spying_decode_parsed))
    return calls


async def test_both_ends_of_a_call_go_through_the_contract_codec(tmp_path, codec_calls):
    async with SqliteBackend(tmp_path / "wire.db") as local:
        server = BackendServer(local, token="t0ken")
        await server.start(listening_socket("127.0.0.1", 0))
        try:
            async with CloudBackend(f"127.0.0.1:{server.address[1]}", token="t0ken") as backend:
                applied = await backend.apply_agent_instance(
                    pb.ApplyAgentInstanceRequest(
                        name="helper",
                        spec=pb.AgentInstanceSpec(
                            instructions="be brief", model=pb.ModelConfig(provider="ollama", model="llama3")
                        ),
                    )
                )
        finally:
            await server.shutdown(0)

    assert applied.agent_instance.name == "helper"
    assert applied.agent_instance.create_time is not None
    # The client encodes the request and decodes the response; the server does the opposite.
    assert sorted(codec_calls) == [
        ("decode", "ApplyAgentInstanceRequest"),
        ("decode", "ApplyAgentInstanceResponse"),
        ("encode", "ApplyAgentInstanceRequest"),
        ("encode", "ApplyAgentInstanceResponse"),
    ]
