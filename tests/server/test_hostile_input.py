"""Several hundred random and crafted payloads to every RPC and to Health, through a real `stigmer server`.

Only documented status codes may come back (never UNKNOWN or INTERNAL), the
server's log holds no traceback, the server still answers, and the database
passes `PRAGMA integrity_check`. The payloads are drawn from a fixed seed, so
a failure names a reproducible case; the count and the per-call deadline
bound the test's time.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from datetime import timedelta

from grpclib.const import Status

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC

from .raw_calls import HEALTH_CHECK, SERVICE, raw_call, raw_channel

SEED = 20261201
PER_METHOD = 24
DOCUMENTED = {
    Status.OK,
    Status.INVALID_ARGUMENT,
    Status.NOT_FOUND,
    Status.ALREADY_EXISTS,
    Status.FAILED_PRECONDITION,
    Status.ABORTED,
    Status.RESOURCE_EXHAUSTED,
    Status.UNAUTHENTICATED,
}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes = b"") -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def _nested_data(depth: int) -> bytes:
    """``CreateExecutionRequest.input.data`` = ``{"d": [[...[]...]]}``, ``depth`` lists deep, encoded by hand."""
    lists = b""  # the innermost, empty ListValue
    for _ in range(depth - 1):
        lists = _length_delimited(1, _length_delimited(6, lists))  # ListValue{values: [Value{list_value: lists}]}
    value = _length_delimited(6, lists)  # Value.list_value
    data = _length_delimited(1, _length_delimited(1, b"d") + _length_delimited(2, value))  # Struct.fields["d"]
    return _length_delimited(3, _length_delimited(2, data))


def _crafted(rng: random.Random, valid: bytes) -> list[bytes]:
    """Hand-made malformations, then random mutations of a valid request."""
    deep = b""
    for _ in range(300):
        deep = _field(1, 2, _varint(len(deep)) + deep)
    cases = [
        b"",
        valid,
        valid[: len(valid) // 2],
        valid + b"\x0a",
        valid + _field(1, 2, _varint(1 << 40)),  # a length far past the end
        _field(1, 2, b"\x02\xff\xfe"),  # invalid UTF-8
        _field(0, 0, b"\x01"),  # field number 0
        _field(2, 3),  # a start-group
        _field(2, 4),  # an unmatched end-group
        _field(1, 0, b"\xff" * 11),  # a varint longer than 10 bytes
        _field(8, 2, _varint(11) + _field(1, 0, _varint(1 << 62)) + _field(2, 0, _varint(5))),  # huge Duration
        _field(8, 2, _varint(8) + _field(1, 0, _varint(1)) + _field(2, 0, _varint(2_000_000_000))),
        deep,
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
    ]
    cases += [_field(number, wire_type, b"\x05") for number in range(1, 9) for wire_type in (0, 1, 2, 5)][:6]
    while len(cases) < PER_METHOD:
        mutated = bytearray(valid or b"\x00")
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(mutated))
            mutated[position] = rng.getrandbits(8)
        cases.append(bytes(mutated[: rng.randint(0, len(mutated))]))
    return cases[:PER_METHOD]


async def _seed(backend: CloudBackend) -> tuple[str, str]:
    """An agent, a terminal execution (so watches end at once), a secret."""
    await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
    created = await backend.create_execution(
        pb.CreateExecutionRequest(
            request_id="seed",
            agent_instance=pb.AgentInstanceRef(name="helper"),
            input=pb.ExecutionInput(message="hi", data=Struct.from_dict({"a": [1, {"b": "c"}]})),
        )
    )
    execution_id = created.execution.id
    await backend.cancel_execution(pb.CancelExecutionRequest(execution_id=execution_id, reason="seeded"))
    await backend.put_secret(pb.PutSecretRequest(name="SEEDED", value="seeded-value"))
    return execution_id, created.execution.agent_instance_id


def _valid_requests(execution_id: str, agent_id: str) -> dict[str, bytes]:
    ref = pb.AgentInstanceRef(name="helper")
    return {
        "GetBackendInfo": bytes(pb.GetBackendInfoRequest()),
        "CreateExecution": bytes(
            pb.CreateExecutionRequest(request_id="r-h", agent_instance=ref, input=pb.ExecutionInput(message="x"))
        ),
        "GetExecution": bytes(pb.GetExecutionRequest(execution_id=execution_id)),
        "ListExecutions": bytes(
            pb.ListExecutionsRequest(page_size=5, agent_instance_id=agent_id, phases=[pb.ExecutionPhase.CANCELLED])
        ),
        "UpdateExecutionStatus": bytes(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution_id,
                phase=pb.ExecutionPhase.RUNNING,
                runner_id="r",
                lease_duration=timedelta(seconds=30),
            )
        ),
        "CancelExecution": bytes(pb.CancelExecutionRequest(execution_id=execution_id, reason="again")),
        "WatchExecution": bytes(pb.WatchExecutionRequest(execution_id=execution_id)),
        "GetExecutionContext": bytes(pb.GetExecutionContextRequest(execution_id=execution_id, runner_id="r")),
        "GetAgentInstance": bytes(pb.GetAgentInstanceRequest(agent_instance=ref)),
        "ApplyAgentInstance": bytes(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC)),
        "ListAgentInstances": bytes(pb.ListAgentInstancesRequest(page_size=2)),
        "DeleteAgentInstance": bytes(pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="nobody"))),
        "PutSecret": bytes(pb.PutSecretRequest(name="SEEDED", value="another-value")),
        "ListSecrets": bytes(pb.ListSecretsRequest(page_size=1)),
        "DeleteSecret": bytes(pb.DeleteSecretRequest(name="NOT_THERE")),
    }


async def test_hundreds_of_hostile_payloads_get_documented_codes_and_leave_the_server_healthy(served, db_path, token):
    rng = random.Random(SEED)
    async with CloudBackend(served.endpoint, token=token) as backend:
        execution_id, agent_id = await _seed(backend)
    valid = _valid_requests(execution_id, agent_id)
    served_rpcs = {path.rsplit("/", 1)[1] for path in pb.BackendServiceBase().__mapping__()}
    assert set(valid) == served_rpcs, "every RPC of the service gets payloads"
    targets = [(SERVICE + rpc, body, rpc == "WatchExecution") for rpc, body in valid.items()]
    # Structured data at the depth limit and at the depth that once poisoned every listing, then mutated.
    for depth in (31, 120):
        request_id = _length_delimited(1, f"deep-{depth}".encode())  # a later field 1 wins: a fresh request id
        targets.append(
            (SERVICE + "CreateExecution", valid["CreateExecution"] + request_id + _nested_data(depth), False)
        )
    targets.append((HEALTH_CHECK, b"", False))
    undocumented: list[str] = []
    seen: Counter[str] = Counter()
    calls = 0
    started = time.monotonic()
    channel = raw_channel(served.endpoint)
    try:
        for method, body, streaming in targets:
            for number, payload in enumerate(_crafted(rng, body)):
                for credential in (token, None) if number % 6 == 0 else (token,):
                    status, detail = await raw_call(
                        channel, method, payload, token=credential, timeout=20, streaming=streaming
                    )
                    calls += 1
                    seen[status.name] += 1
                    if status not in DOCUMENTED:
                        undocumented.append(f"{method} case {number} ({payload[:40]!r}): {status.name} {detail}")
        # An oversized message to every method: refused unread.
        for method, _, streaming in targets:
            status, _ = await raw_call(channel, method, b"\x00" * (5 << 20), token=token, streaming=streaming)
            calls += 1
            seen[status.name] += 1
            if status != Status.RESOURCE_EXHAUSTED:
                undocumented.append(f"{method} oversized: {status.name}")
        health, _ = await raw_call(channel, HEALTH_CHECK, b"")
    finally:
        channel.close()
    elapsed = time.monotonic() - started
    assert calls >= 400, calls
    assert not undocumented, "\n".join(undocumented[:20])
    assert health == Status.OK and served.process.poll() is None, "the server must still be up and serving"
    log = served.stderr_text()
    assert "Traceback" not in log, log[-3000:]
    assert len(log.splitlines()) < 100, "refusals are logged rate-limited, not one line per request"
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
    # Whatever the payloads got stored stays readable by a remote client, page by page and one by one.
    async with CloudBackend(served.endpoint, token=token) as backend:
        read = await _read_back_everything(backend)
    assert read == stored, (read, stored)
    print(
        f"\n[hostile input] {calls} calls in {elapsed:.1f}s, all with documented codes: "
        + ", ".join(f"{name} {count}" for name, count in seen.most_common())
        + f"; {stored} stored executions read back"
    )


async def _read_back_everything(backend: CloudBackend) -> int:
    """Every execution, agent and secret name through the list and get RPCs; the number of executions read."""
    executions, token = 0, ""
    while True:
        page = await backend.list_executions(pb.ListExecutionsRequest(page_size=50, page_token=token))
        for execution in page.executions:
            await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))
        executions += len(page.executions)
        if not (token := page.next_page_token):
            break
    token = ""
    while True:
        agents = await backend.list_agent_instances(pb.ListAgentInstancesRequest(page_size=50, page_token=token))
        for agent in agents.agent_instances:
            ref = pb.AgentInstanceRef(name=agent.name)
            await backend.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=ref))
        if not (token := agents.next_page_token):
            break
    token = ""
    while True:
        names = await backend.list_secrets(pb.ListSecretsRequest(page_size=50, page_token=token))
        if not (token := names.next_page_token):
            break
    return executions
