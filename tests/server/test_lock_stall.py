"""A write waiting for another process's SQLite lock must not freeze `stigmer server`.

The README says the CLI and the server share the file; while the CLI (here:
another process holding ``BEGIN IMMEDIATE``) has the write lock, a write sent
to the server waits for it, and everything that does not need the file is
still answered at once: health checks, ``GetBackendInfo``.
"""

from __future__ import annotations

import asyncio
import time

from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.wire import parse_endpoint
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.builders import SPEC, create_request
from tests.sqlite_lock import write_lock_held

_CREATE = "/stigmer.backend.v1.BackendService/CreateExecution"


async def _until_logged(server: ServerProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.stderr_text():
        assert time.monotonic() < deadline, f"the server never logged {text!r}"
        await asyncio.sleep(0.01)


async def test_health_and_backend_info_answer_while_a_write_waits_for_another_process(db_path, token_file, server_env):
    args = ["--db", str(db_path), "--token-file", str(token_file), "-v"]
    token = token_file.read_text().strip()
    with ServerProcess.start(args, env=server_env) as server:
        async with CloudBackend(server.endpoint, token=token) as backend:
            await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
            with write_lock_held(db_path):
                write = asyncio.ensure_future(backend.create_execution(create_request("r-1", "hi", agent="helper")))
                await _until_logged(server, f"call {_CREATE}")  # the handler runs, into the lock
                host, port = parse_endpoint(server.endpoint)
                channel = Channel(host, port)
                try:
                    health = HealthStub(channel)
                    latencies = []
                    for _ in range(5):
                        started = time.perf_counter()
                        reply = await health.Check(HealthCheckRequest(), timeout=5)
                        latencies.append(time.perf_counter() - started)
                        assert reply.status == HealthCheckResponse.SERVING
                finally:
                    channel.close()
                info = await backend.get_backend_info(pb.GetBackendInfoRequest())
                assert info.backend_kind == "sqlite"
                assert not write.done(), "the write should still be waiting for the lock"
                assert sorted(latencies)[2] < 0.05, latencies
                print(
                    f"\n[lock stall] Health while a write waits for another process's lock: "
                    f"median {sorted(latencies)[2] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
                )
            created = await write
            assert created.created


async def test_reads_answer_while_a_write_waits_for_another_process(db_path, token_file, server_env):
    """GetExecution and ListExecutions do not queue behind the waiting write (a read-only connection)."""
    args = ["--db", str(db_path), "--token-file", str(token_file), "-v"]
    token = token_file.read_text().strip()
    with ServerProcess.start(args, env=server_env) as server:
        async with CloudBackend(server.endpoint, token=token) as backend:
            await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
            first = await backend.create_execution(create_request("r-0", "first", agent="helper"))
            with write_lock_held(db_path):
                write = asyncio.ensure_future(backend.create_execution(create_request("r-1", "hi", agent="helper")))
                await _until_logged(server, f"call {_CREATE}")  # the handler runs, into the lock
                latencies = []
                for _ in range(5):
                    started = time.perf_counter()
                    got = await backend.get_execution(pb.GetExecutionRequest(execution_id=first.execution.id))
                    listed = await backend.list_executions(pb.ListExecutionsRequest())
                    latencies.append(time.perf_counter() - started)
                    assert got.execution.id == first.execution.id
                    # The waiting create is not acknowledged: the reads are ordered before it.
                    assert [e.id for e in listed.executions] == [first.execution.id]
                assert not write.done(), "the write should still be waiting for the lock"
                # A read normally takes a few ms; behind the write it took the whole lock (seconds).
                assert max(latencies) < 0.5, latencies
                print(
                    f"\n[lock stall] GetExecution + ListExecutions while a write waits for another process's lock: "
                    f"median {sorted(latencies)[2] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
                )
            created = await write
            assert created.created
            listed = await backend.list_executions(pb.ListExecutionsRequest())
            assert [e.id for e in listed.executions] == [first.execution.id, created.execution.id]
