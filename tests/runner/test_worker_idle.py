"""An idle runner asks for work at a cadence that backs off: never a busy loop."""

from __future__ import annotations

import asyncio
import itertools
import time

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner.worker import Worker
from tests.secrets.workload import agent_spec, apply_agent, file_source

LISTS = 8


class CountedListing(SqliteBackend):
    """The real SQLite backend, noting when it is listed; stops the worker after ``LISTS`` lists."""

    worker: Worker

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.listed: list[float] = []

    async def list_executions(self, message):
        self.listed.append(time.monotonic())
        if len(self.listed) == LISTS:
            self.worker.stop()
        return await super().list_executions(message)


async def test_an_idle_worker_lists_less_and_less_often(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    async with CountedListing(home / "local.db", master_key=file_source(home)) as backend:
        backend.worker = Worker(backend, min_idle=0.05, max_idle=0.4)
        await backend.worker.run()
    gaps = [later - earlier for earlier, later in zip(backend.listed, backend.listed[1:], strict=False)]
    expected = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert len(gaps) == len(expected)
    for gap, least in zip(gaps, expected, strict=True):
        assert gap >= least * 0.95, (gaps, expected)


async def test_a_claim_refused_every_time_backs_off_too(tmp_path):
    """Regression: a refused claim's task had ended when the worker waited, so the wait ended at once:
    an invalid runner id (or a credential bound to another runner) listed the backend in a busy loop."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    async with CountedListing(home / "local.db", master_key=file_source(home)) as backend:
        await apply_agent(backend, "agent", agent_spec())
        request = pb.CreateExecutionRequest(
            request_id="pending-1", agent_instance=pb.AgentInstanceRef(name="agent"), input=pb.ExecutionInput("hi")
        )
        pending = (await backend.create_execution(request)).execution
        said: list[str] = []
        backend.worker = Worker(backend, runner_id="not a valid id", min_idle=0.05, max_idle=0.4, on_status=said.append)
        await backend.worker.run()
        still = (await backend.get_execution(pb.GetExecutionRequest(execution_id=pending.id))).execution
    assert still.status.phase == pb.ExecutionPhase.PENDING
    assert len(said) == LISTS - 1 and all("INVALID_ARGUMENT: runner_id" in line for line in said), said
    gaps = [later - earlier for earlier, later in itertools.pairwise(backend.listed)]
    for gap, least in zip(gaps, [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4], strict=True):
        assert gap >= least * 0.95, gaps


class RefusingCredential(SqliteBackend):
    """A backend that refuses the caller's credential, as a server does for a revoked or wrong token."""

    async def list_executions(self, message):
        raise GRPCError(Status.UNAUTHENTICATED, "missing or invalid bearer token")


async def test_a_refused_credential_stops_the_worker_by_itself(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    said: list[str] = []
    async with RefusingCredential(home / "local.db", master_key=file_source(home)) as backend:
        worker = Worker(backend, min_idle=0.05, max_idle=0.4, on_status=said.append)
        async with asyncio.timeout(30):  # before the fix: it listed for ever, one line per try
            await worker.run()
    assert worker.refused is not None and worker.refused.status == Status.UNAUTHENTICATED
    assert said == []  # the caller reports the refusal once (`stigmer runner start`: one error line)
