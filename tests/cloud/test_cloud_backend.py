"""``CloudBackend`` itself: its shape, its retry rules, and how transport failures surface."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import time

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.base import Backend
from stigmer_backend.backends.cloud import RPC_NAMES, CloudBackend, RetryPolicy
from stigmer_backend.backends.cloud.retries import is_retry_safe
from stigmer_backend.backends.wire import format_endpoint, parse_endpoint
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def black_hole():
    """A TCP server that accepts connections and never answers: only a deadline ends a call to it."""
    connections = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


def retries_logged(caplog) -> int:
    return sum("attempt" in record.getMessage() for record in caplog.records if record.name.startswith("stigmer"))


def test_every_rpc_of_the_generated_base_is_forwarded_with_its_signature():
    base_rpcs = [name for name in vars(pb.BackendServiceBase) if not name.startswith("_")]
    assert list(RPC_NAMES) == base_rpcs and len(RPC_NAMES) == 15
    assert issubclass(CloudBackend, Backend)
    for name in RPC_NAMES:
        ours, generated = getattr(CloudBackend, name), getattr(pb.BackendServiceBase, name)
        assert ours is not generated, name
        assert name in vars(CloudBackend), name
        assert inspect.signature(ours) == inspect.signature(generated), name
        assert ours.__doc__ == generated.__doc__
        assert inspect.isasyncgenfunction(ours) == inspect.isasyncgenfunction(generated), name


def test_the_retry_safe_rpcs_are_exactly_those_the_proto_lists():
    assert {name for name in RPC_NAMES if is_retry_safe(name)} == {
        "get_backend_info",
        "create_execution",
        "get_execution",
        "list_executions",
        "watch_execution",
        "get_execution_context",
        "get_agent_instance",
        "apply_agent_instance",
        "list_agent_instances",
        "put_secret",
        "list_secrets",
    }


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:7780", ("127.0.0.1", 7780)),
        ("example.com:443", ("example.com", 443)),
        ("[::1]:7780", ("::1", 7780)),
        (" localhost:1 ", ("localhost", 1)),
    ],
)
def test_endpoints_parse_and_format_back(text, parsed):
    assert parse_endpoint(text) == parsed
    assert parse_endpoint(format_endpoint(*parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("example.com", "port is missing"),
        (":443", "port is missing"),
        ("example.com:http", "port must be a number"),
        ("example.com:0", "port must be a number"),
        ("example.com:70000", "port must be a number"),
        ("https://example.com:443", "no scheme or path"),
        ("::1:7780", "IPv6 address in brackets"),
        ("[nope]:7780", "not an IPv6 address"),
    ],
)
def test_malformed_endpoints_are_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_endpoint(text)


def test_backoff_grows_stays_jittered_and_capped():
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=1.0, multiplier=2.0)
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), attempt
        assert len(set(waits)) > 1  # jitter: clients cut off together do not come back together
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


async def test_an_unreachable_endpoint_is_unavailable_and_only_safe_rpcs_are_retried(caplog):
    caplog.set_level(logging.INFO, logger="stigmer_backend.backends.cloud")
    endpoint = f"127.0.0.1:{free_port()}"
    async with CloudBackend(endpoint, retry=FAST) as backend:
        with pytest.raises(GRPCError) as safe:
            await backend.get_execution(pb.GetExecutionRequest(execution_id="exe-1"))
        safe_retries = retries_logged(caplog)
        caplog.clear()
        with pytest.raises(GRPCError) as unsafe:
            await backend.cancel_execution(pb.CancelExecutionRequest(execution_id="exe-1"))
    assert safe.value.status == unsafe.value.status == Status.UNAVAILABLE
    assert safe.value.message == f"{endpoint} unreachable: connection refused (is the server running?)"
    assert safe_retries == FAST.max_attempts - 1
    assert retries_logged(caplog) == 0


async def test_a_deadline_spent_on_the_client_side_is_deadline_exceeded_not_a_timeout():
    async with black_hole() as endpoint, CloudBackend(endpoint, timeout=0.3, retry=FAST) as backend:
        started = time.monotonic()
        with pytest.raises(GRPCError) as caught:
            await backend.get_backend_info(pb.GetBackendInfoRequest())
        elapsed = time.monotonic() - started
    assert caught.value.status == Status.DEADLINE_EXCEEDED
    assert caught.value.message == f"get_backend_info got no answer from {endpoint} in time"
    assert 0.25 <= elapsed < 5


async def test_a_watch_has_its_own_deadline():
    async with black_hole() as endpoint, CloudBackend(endpoint, timeout=30, watch_timeout=0.3) as backend:
        with pytest.raises(GRPCError) as caught:
            async for _ in backend.watch_execution(pb.WatchExecutionRequest(execution_id="exe-1")):
                pass
    assert caught.value.status == Status.DEADLINE_EXCEEDED


async def test_the_unary_deadline_does_not_cut_a_watch(served, token):
    async with CloudBackend(served.endpoint, token=token, timeout=0.5) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id="r-1",
                agent_instance=pb.AgentInstanceRef(name="helper"),
                input=pb.ExecutionInput(message="x"),
            )
        )
        execution_id = created.execution.id
        phases = []
        first_seen = asyncio.Event()

        async def watch() -> None:
            async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
                phases.append(response.execution.status.phase)
                first_seen.set()

        watching = asyncio.ensure_future(watch())
        await asyncio.wait_for(first_seen.wait(), 10)
        # Longer than the unary deadline, measured by the watch itself still being open afterwards.
        done, _ = await asyncio.wait({watching}, timeout=1.0)
        assert not done
        await backend.cancel_execution(pb.CancelExecutionRequest(execution_id=execution_id, reason="enough"))
        await asyncio.wait_for(watching, 10)
    assert phases == [pb.ExecutionPhase.PENDING, pb.ExecutionPhase.CANCELLED]


async def test_a_closed_backend_refuses_calls():
    backend = CloudBackend(f"127.0.0.1:{free_port()}")
    await backend.aclose()
    with pytest.raises(GRPCError) as caught:
        await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert caught.value.status == Status.UNAVAILABLE
    assert "closed" in caught.value.message


def test_the_token_stays_out_of_the_repr():
    backend = CloudBackend("127.0.0.1:7780", token="super-secret-token-value")
    assert "super-secret-token-value" not in repr(backend)
    assert "127.0.0.1:7780" in repr(backend)


def test_a_missing_ca_file_is_named(tmp_path):
    with pytest.raises(GRPCError) as caught:
        CloudBackend("127.0.0.1:7780", ca_file=str(tmp_path / "ca.pem"))
    assert caught.value.status == Status.UNAVAILABLE
    assert "ca.pem" in caught.value.message


@pytest.mark.parametrize("token", ["has space", "new\nline", "naïve"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(token):
    with pytest.raises(ValueError, match="printable ASCII without spaces"):
        CloudBackend("127.0.0.1:7780", token=token)


def test_a_ca_file_without_a_certificate_is_named(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(GRPCError) as caught:
        CloudBackend("127.0.0.1:7780", ca_file=str(empty))
    assert caught.value.status == Status.UNAVAILABLE
    assert caught.value.message.startswith(f"CA file {empty} is not a PEM certificate")


async def test_leaving_a_watch_early_ends_the_call_on_the_server(tmp_path):
    from stigmer_backend.backends.sqlite import SqliteBackend
    from stigmer_backend.server.backend_server import BackendServer
    from stigmer_backend.server.startup import listening_socket

    async with SqliteBackend(tmp_path / "watch.db") as local:
        server = BackendServer(local)
        await server.start(listening_socket("127.0.0.1", 0))
        try:
            async with CloudBackend(f"127.0.0.1:{server.address[1]}") as backend:
                await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
                created = await backend.create_execution(
                    pb.CreateExecutionRequest(
                        request_id="r-1",
                        agent_instance=pb.AgentInstanceRef(name="helper"),
                        input=pb.ExecutionInput(message="x"),
                    )
                )
                watch = backend.watch_execution(pb.WatchExecutionRequest(execution_id=created.execution.id))
                async with contextlib.aclosing(watch):
                    async for _ in watch:
                        assert server.gate.in_flight == 1
                        break
                deadline = time.monotonic() + 10
                while server.gate.in_flight:
                    assert time.monotonic() < deadline, "the server still runs the abandoned watch"
                    await asyncio.sleep(0.01)
        finally:
            await server.shutdown(0)
