"""``stigmer server`` serves PostgreSQL when told by ``--backend``, by ``STIGMER_SERVER_BACKEND``, or by the
CLI's context (``config.json``), which every other command already follows; ``--pool-size`` caps its
connections."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.builders import SPEC
from tests.postgres.conftest import replica_env

CREATE_LOCK = 0x5374_676D_0001  # the advisory lock every CreateExecution takes (backends/postgres/_backend.py)


def stub_of(server: ServerProcess) -> tuple[Channel, pb.BackendServiceStub]:
    host, _, port = server.endpoint.rpartition(":")
    channel = Channel(host, int(port))
    return channel, pb.BackendServiceStub(channel, timeout=60)


async def test_the_server_command_takes_the_database_from_the_environment_in_either_libpq_scheme(
    database, master_key, tmp_path
):
    assert database.startswith("postgresql://")
    libpq_alias = "postgres://" + database.removeprefix("postgresql://")  # as many operators write it
    env = {**replica_env(tmp_path / "home", master_key), "STIGMER_SERVER_BACKEND": libpq_alias}
    with ServerProcess.start([], env=env) as server:
        channel, stub = stub_of(server)
        try:
            info = await stub.get_backend_info(pb.GetBackendInfoRequest())
        finally:
            channel.close()
    assert info.backend_kind == "postgresql"
    assert not (tmp_path / "home" / "local.db").exists()


async def waiting_on_the_create_lock(admin: psycopg.Connection, count: int) -> None:
    """Returns once ``count`` sessions wait for the creation lock (a condition, polled, with a deadline)."""
    deadline = time.monotonic() + 60
    while True:
        (waiting,) = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone() or (0,)
        if waiting >= count:
            return
        assert time.monotonic() < deadline, f"{waiting} of {count} creations reached the lock"
        await asyncio.sleep(0.02)


async def test_the_server_serves_the_database_the_cli_context_names_with_the_pool_size_given(
    database, master_key, tmp_path: Path
):
    home = tmp_path / "home"
    env = replica_env(home, master_key)
    (home / "config.json").write_text(json.dumps({"kind": "postgresql", "url": database}))
    (home / "config.json").chmod(0o600)
    with ServerProcess.start(["--pool-size", "1"], env=env) as server:
        channel, stub = stub_of(server)
        try:
            await stub.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="worker", spec=SPEC))
            with psycopg.connect(database, autocommit=True) as admin:
                admin.execute("SELECT pg_advisory_lock(%s)", (CREATE_LOCK,))
                create = asyncio.ensure_future(
                    stub.create_execution(
                        pb.CreateExecutionRequest(
                            request_id="held",
                            agent_instance=pb.AgentInstanceRef(name="worker"),
                            input=pb.ExecutionInput(message="held"),
                        )
                    )
                )
                await waiting_on_the_create_lock(admin, 1)
                # The pool's one connection waits in that creation: any other call finds none free.
                with pytest.raises(GRPCError) as raised:
                    await stub.list_executions(pb.ListExecutionsRequest())
                admin.execute("SELECT pg_advisory_unlock(%s)", (CREATE_LOCK,))
            assert (await create).created
            listed = await stub.list_executions(pb.ListExecutionsRequest())
        finally:
            channel.close()
    assert raised.value.status == Status.UNAVAILABLE
    assert raised.value.message.startswith("no connection to database ")
    assert raised.value.message.endswith(" became free in time; try again")
    assert [execution.input.message for execution in listed.executions] == ["held"]
    assert not (home / "local.db").exists(), "nothing went to the default SQLite file"
