"""The server dies (SIGKILL) and comes back on the same port: the same ``CloudBackend`` recovers,
and a repeated ``CreateExecution`` never makes a second execution.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from stigmer_backend.backends.cloud import CloudBackend, RetryPolicy
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.builders import SPEC
from tests.builders import create_request as _create
from tests.remote_fixtures import count_rows

PATIENT = RetryPolicy(max_attempts=40, initial_backoff=0.05, max_backoff=0.5)


async def test_the_same_backend_recovers_after_kill_9_and_restart(db_path, token_file, token, server_env, caplog):
    caplog.set_level(logging.INFO, logger="stigmer_backend.backends.cloud")
    args = ["--db", str(db_path), "--token-file", str(token_file)]
    first = ServerProcess.start(args, env=server_env)
    port = first.port
    async with CloudBackend(first.endpoint, token=token, retry=PATIENT) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        created = await backend.create_execution(_create("r-1"))
        assert created.created

        assert first.kill() == -9
        first.close()

        # The next call on the same object, once the server is back, just works.
        with ServerProcess.start([*args, "--port", str(port)], env=server_env) as second:
            again = await backend.create_execution(_create("r-1"))
            assert (again.created, again.execution.id) == (False, created.execution.id)

            # A retry-safe call made while the server is down waits it out and succeeds.
            second.kill()
        caplog.clear()
        pending = asyncio.ensure_future(backend.create_execution(_create("r-2")))
        deadline = time.monotonic() + 10
        while not any("attempt" in record.getMessage() for record in caplog.records):
            if time.monotonic() > deadline:
                pytest.fail("the create was not retried while the server was down")
            await asyncio.sleep(0.01)
        assert not pending.done()
        with ServerProcess.start([*args, "--port", str(port)], env=server_env):
            late = await asyncio.wait_for(pending, 30)
            repeated = await backend.create_execution(_create("r-2"))
            listed = await backend.list_executions(pb.ListExecutionsRequest())
    assert late.created and not repeated.created
    assert repeated.execution.id == late.execution.id
    assert [execution.id for execution in listed.executions] == [created.execution.id, late.execution.id]
    assert count_rows(db_path, "executions") == 2
