"""What `stigmer server` does with requests that are too big, too deep or not valid protobuf.

Each payload goes through a real server subprocess; the answer must be the
documented status, nothing may be written, the server's log gets one line at
most and never a traceback.
"""

from __future__ import annotations

import sqlite3

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.google.protobuf import ListValue, Struct, Value
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC
from tests.remote_fixtures import count_rows

from .raw_calls import HEALTH_CHECK, SERVICE, raw_call, raw_channel


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def _nested_lists(depth: int) -> Struct:
    value: object = [1]
    for _ in range(depth - 1):
        value = [value]
    return Struct.from_dict({"deep": value})


async def test_a_request_nested_too_deep_is_refused_and_every_page_stays_readable(served, db_path, token):
    """`ExecutionInput.data`: at most 32 levels. 120 was committed, then no client could read it back."""
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        with pytest.raises(GRPCError) as caught:
            await backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id="deep-33",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(data=_nested_lists(33)),
                )
            )
        assert caught.value.status == Status.INVALID_ARGUMENT
        assert "input.data" in caught.value.message
        channel = raw_channel(served.endpoint)
        try:  # 120 deep, the depth that poisoned listing: our client cannot even encode it, so by hand
            status, _ = await raw_call(channel, SERVICE + "CreateExecution", _deep_create(120), token=token)
        finally:
            channel.close()
        assert status == Status.INVALID_ARGUMENT
        assert count_rows(db_path, "executions") == 0
        # 31 lists inside the object: 32 levels, the limit, is stored and read back by everyone.
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id="at-limit",
                agent_instance=pb.AgentInstanceRef(name="helper"),
                input=pb.ExecutionInput(data=_nested_lists(31)),
            )
        )
        listed = await backend.list_executions(pb.ListExecutionsRequest())
        assert [e.id for e in listed.executions] == [created.execution.id]
        assert listed.executions[0].input.data == _nested_lists(31)


NOT_JSON = {
    "no-kind": Value(),
    "no-kind-in-a-list": Value(list_value=ListValue(values=[Value(string_value="a"), Value()])),
    "nan": Value(number_value=float("nan")),
    "infinity": Value(number_value=float("-inf")),
}


@pytest.mark.parametrize("case", sorted(NOT_JSON))
async def test_structured_input_that_is_not_json_is_invalid_argument_and_writes_nothing(served, db_path, token, case):
    """Valid protobuf that no JSON can hold: once INTERNAL, "holds a row Stigmer cannot read", for a fresh request."""
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        with pytest.raises(GRPCError) as caught:
            await backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id="not-json",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message="hi", data=Struct(fields={"d": NOT_JSON[case]})),
                )
            )
    assert caught.value.status == Status.INVALID_ARGUMENT, caught.value.message
    assert caught.value.message.startswith("input.data: holds ")
    assert count_rows(db_path, "executions") == 0


async def test_a_request_over_the_size_cap_is_refused_before_it_is_read(served):
    """64 MiB to Health without a token: RESOURCE_EXHAUSTED, and the server never holds the body."""
    channel = raw_channel(served.endpoint)
    try:
        before = _peak_rss_kib(served.pid)
        status, message = await raw_call(channel, HEALTH_CHECK, b"\0" * (64 << 20))
        assert status == Status.RESOURCE_EXHAUSTED
        assert "at most 4194304" in message
        # Buffering the body would raise the peak by at least 64 MiB; flow control bounds it to a window.
        assert _peak_rss_kib(served.pid) - before < 24 * 1024
        # The connection is still usable (the refused body's flow-control credit was not lost).
        status, _ = await raw_call(channel, HEALTH_CHECK, b"")
        assert status == Status.OK
    finally:
        channel.close()


async def test_an_authenticated_oversized_put_secret_writes_nothing(served, db_path, token):
    channel = raw_channel(served.endpoint)
    try:
        body = bytes(pb.PutSecretRequest(name="BIG", value="x" * (5 << 20)))
        status, _ = await raw_call(channel, SERVICE + "PutSecret", body, token=token)
        assert status == Status.RESOURCE_EXHAUSTED
    finally:
        channel.close()
    assert count_rows(db_path, "secrets") == 0


def test_the_size_cap_is_configurable(db_path, token_file, server_env):
    import asyncio

    from stigmer_backend.server.launch import ServerProcess

    args = ["--db", str(db_path), "--token-file", str(token_file), "--max-request-bytes", "2048"]
    with ServerProcess.start(args, env=server_env) as server:

        async def calls() -> list[Status]:
            channel = raw_channel(server.endpoint)
            try:
                return [(await raw_call(channel, HEALTH_CHECK, b"\0" * size))[0] for size in (2048, 2049)]
            finally:
                channel.close()

        # 2048 zero bytes are 1024 fields 0 of wire type 0 with value 0: malformed (field 0 is invalid).
        assert asyncio.run(calls()) == [Status.INVALID_ARGUMENT, Status.RESOURCE_EXHAUSTED]


_PUT = SERVICE + "PutSecret"
_UPDATE = SERVICE + "UpdateExecutionStatus"


def _duration(seconds_varint: bytes, nanos_varint: bytes = b"") -> bytes:
    """UpdateExecutionStatusRequest{execution_id: "x", lease_duration: {seconds, nanos}} as raw bytes."""
    inner = b"\x08" + seconds_varint + (b"\x10" + nanos_varint if nanos_varint else b"")
    return b"\x0a\x01x" + b"\x42" + bytes([len(inner)]) + inner


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _deep_create(depth: int) -> bytes:
    """CreateExecutionRequest whose input.data holds ``depth`` nested lists, encoded by hand (our encoder recurses)."""
    value = b""
    for _ in range(depth):
        value = _field(6, _field(1, value))  # Value.list_value = ListValue{values: [value]}
    data = _field(1, _field(1, b"d") + _field(2, value))  # Struct.fields = {"d": value}
    request = pb.CreateExecutionRequest(request_id="deep", agent_instance=pb.AgentInstanceRef(name="helper"))
    return bytes(request) + _field(3, _field(2, data))  # input.data


MALFORMED = {
    "invalid-utf8": (_PUT, b"\x0a\x02\xff\xfe"),
    "truncated-value": (_PUT, bytes(pb.PutSecretRequest(name="A", value="hello world"))[:-3]),
    "wrong-wire-type": (_PUT, b"\x08\x05"),
    "truncated-varint": (_PUT, b"\x08\xff"),
    "lease-2^62-seconds": (_UPDATE, _duration(_varint(1 << 62))),
    "nanos-2e9": (_UPDATE, _duration(_varint(1), _varint(2_000_000_000))),
    "nanos-wrong-sign": (_UPDATE, _duration(_varint(5), _varint(-1))),
    "nested-300-deep": (SERVICE + "CreateExecution", _deep_create(300)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_protobuf_is_invalid_argument_with_one_log_line(served, db_path, token, case):
    method, body = MALFORMED[case]
    channel = raw_channel(served.endpoint)
    try:
        status, message = await raw_call(channel, method, body, token=token)
    finally:
        channel.close()
    assert status == Status.INVALID_ARGUMENT, message
    log = served.stderr_text()
    assert "Traceback" not in log
    assert sum("refused" in line for line in log.splitlines()) == 1
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM secrets").fetchone()[0] == 0


async def test_garbage_to_health_without_a_token_is_logged_rate_limited(served):
    channel = raw_channel(served.endpoint)
    try:
        for _ in range(50):
            status, _ = await raw_call(channel, HEALTH_CHECK, b"\x0a\x05\xff\xff\xff\xff\xff")
            assert status == Status.INVALID_ARGUMENT
    finally:
        channel.close()
    log = served.stderr_text()
    assert "Traceback" not in log
    assert sum("refused" in line for line in log.splitlines()) <= 5
