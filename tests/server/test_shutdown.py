"""Graceful shutdown: unary calls in flight finish, new calls and streams get UNAVAILABLE, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from stigmer_backend.backends.cloud import CloudBackend, RetryPolicy
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.backend_server import BackendServer
from stigmer_backend.server.launch import ServerProcess
from stigmer_backend.server.startup import listening_socket
from tests.builders import SPEC, apply_request, create_request
from tests.remote_fixtures import count_rows

NO_RETRY = RetryPolicy(max_attempts=1)
APPLY = "/stigmer.backend.v1.BackendService/ApplyAgentInstance"


async def until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls ``condition()`` until true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class HeldSqliteBackend(SqliteBackend):
    """The SQLite backend, with ``GetExecution`` held at its start until the test releases it."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def get_execution(self, message: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        self.entered.set()
        await self.release.wait()
        return await super().get_execution(message)


async def _create_execution(client: CloudBackend) -> pb.Execution:
    await client.apply_agent_instance(apply_request())
    return (await client.create_execution(create_request("r-1"))).execution


async def test_shutdown_lets_a_unary_call_finish_ends_streams_and_refuses_new_calls(tmp_path):
    backend = HeldSqliteBackend(tmp_path / "held.db")
    server = BackendServer(backend)
    await server.start(listening_socket("127.0.0.1", 0))
    endpoint = f"127.0.0.1:{server.address[1]}"
    client = CloudBackend(endpoint, retry=NO_RETRY)
    late_client = CloudBackend(endpoint, retry=NO_RETRY)
    channel = Channel("127.0.0.1", server.address[1])
    try:
        execution = await _create_execution(client)
        seen: list[pb.Execution] = []

        async def watch() -> None:
            async for response in client.watch_execution(pb.WatchExecutionRequest(execution_id=execution.id)):
                seen.append(response.execution)

        watching = asyncio.ensure_future(watch())
        await until(lambda: seen, what="the first watched state")
        in_flight = asyncio.ensure_future(client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)))
        await asyncio.wait_for(backend.entered.wait(), 10)

        shutdown = asyncio.ensure_future(server.shutdown(grace=30))
        await until(lambda: server.gate.draining, what="draining")

        with pytest.raises(GRPCError) as refused:
            await late_client.get_backend_info(pb.GetBackendInfoRequest())
        assert refused.value.status == Status.UNAVAILABLE
        assert "shutting down" in refused.value.message

        health = await HealthStub(channel).Check(HealthCheckRequest(service=""))
        assert health.status == HealthCheckResponse.NOT_SERVING

        with pytest.raises(GRPCError) as ended:
            await asyncio.wait_for(watching, 10)
        assert ended.value.status == Status.UNAVAILABLE
        assert [state.version for state in seen] == [execution.version]

        assert not shutdown.done()  # still waiting for the unary call
        backend.release.set()
        answer = await asyncio.wait_for(in_flight, 10)
        assert answer.execution.id == execution.id
        await asyncio.wait_for(shutdown, 10)
    finally:
        backend.release.set()
        channel.close()
        await client.aclose()
        await late_client.aclose()
        if not server.gate.draining:
            await server.shutdown(0)
        await backend.aclose()


async def test_sigterm_while_a_write_waits_for_the_database_lets_it_finish(db_path, token_file, token, server_env):
    args = ["--db", str(db_path), "--token-file", str(token_file), "--verbose"]
    with ServerProcess.start(args, env=server_env) as server:
        async with CloudBackend(server.endpoint, token=token, retry=NO_RETRY) as client:
            await client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="first", spec=SPEC))
            blocker = sqlite3.connect(db_path, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")  # the server's next write waits for this lock
                write = asyncio.ensure_future(
                    client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="second", spec=SPEC))
                )
                await until(
                    lambda: server.stderr_text().count(f"call {APPLY}") == 2,
                    what="the second write to reach the server (its --verbose log line)",
                )
                server.process.send_signal(signal.SIGTERM)
                blocker.execute("ROLLBACK")
            finally:
                blocker.close()
            answer = await asyncio.wait_for(write, 30)
        assert answer.outcome == pb.ApplyOutcome.CREATED
        assert server.process.wait(30) == 0
        assert "shutting down" in server.stderr_text()
    assert count_rows(db_path, "agent_instances") == 2


async def test_sigterm_ends_an_open_watch_with_unavailable_without_waiting_for_the_grace_period(
    db_path, token_file, token, server_env
):
    args = ["--db", str(db_path), "--token-file", str(token_file), "--grace", "60"]
    with ServerProcess.start(args, env=server_env) as server:
        async with CloudBackend(server.endpoint, token=token, retry=NO_RETRY) as client:
            execution = await _create_execution(client)
            seen: list[pb.Execution] = []

            async def watch() -> None:
                async for response in client.watch_execution(pb.WatchExecutionRequest(execution_id=execution.id)):
                    seen.append(response.execution)

            watching = asyncio.ensure_future(watch())
            await until(lambda: seen, what="the first watched state")
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(GRPCError) as ended:
                await asyncio.wait_for(watching, 30)
            assert ended.value.status == Status.UNAVAILABLE
        assert server.process.wait(30) == 0
        assert time.monotonic() - signalled < 30  # far below the 60 s grace: streams are not waited for
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM executions").fetchone()[0] == 1
