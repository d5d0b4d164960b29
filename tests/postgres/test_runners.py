"""Real ``stigmer runner start`` processes, each logged in to its own ``stigmer server`` replica on one
PostgreSQL database, drain 500 executions: each is claimed exactly once and the model is called once each."""

from __future__ import annotations

import asyncio
import collections
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.remote_fixtures import write_token_file
from tests.runner.conftest import Home
from tests.runner.fake_model import FakeModel, start_fake_model, stop_fake_model

Phase = pb.ExecutionPhase
TERMINAL = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)
CLAIM = re.compile(r"^(exe_\w+): running as (\S+)$", re.MULTILINE)
COUNT = 500


@pytest.fixture
def model() -> Iterator[FakeModel]:
    fake = start_fake_model()
    yield fake
    stop_fake_model(fake)


async def final_state(backend: CloudBackend, execution_id: str) -> pb.Execution:
    """The execution once terminal, followed with ``WatchExecution`` (no polling)."""
    async with asyncio.timeout(300):
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            if response.execution.status.phase in TERMINAL:
                return response.execution
    raise AssertionError(f"the watch of {execution_id} ended before a terminal phase")


def test_runners_on_two_replicas_claim_every_execution_exactly_once(start_replica, model, tmp_path: Path) -> None:
    token = secrets.token_hex(24)
    token_file = write_token_file(tmp_path / "token", token)
    servers = [start_replica("--token-file", str(token_file)) for _ in range(2)]
    homes = []
    for name, server in zip(("a", "b"), servers, strict=True):
        path = tmp_path / f"runner-{name}"
        path.mkdir(mode=0o700)
        homes.append(Home(path))
        homes[-1].run("login", "--endpoint", server.endpoint, "--plaintext", input=token)

    async def drain() -> tuple[list[pb.Execution], float]:
        backends = [CloudBackend(server.endpoint, token=token) for server in servers]
        try:
            spec = pb.AgentInstanceSpec(
                instructions="Answer.",
                model=pb.ModelConfig(provider="openai-compatible", model="stream", endpoint=model.endpoint),
            )
            await backends[0].apply_agent_instance(pb.ApplyAgentInstanceRequest(name="busy", spec=spec))
            runners = [
                home.start("runner", "start", "--runner-id", f"runner-{name}", "--concurrency", "4")
                for name, home in zip(("a", "b"), homes, strict=True)
            ]
            for runner in runners:
                await asyncio.to_thread(runner.wait_for, "started")
            started = time.perf_counter()
            ids: list[str] = []
            for first in range(0, COUNT, 50):  # through both replicas, in concurrent batches, while the runners claim
                created = await asyncio.gather(
                    *(
                        backends[n % 2].create_execution(
                            pb.CreateExecutionRequest(
                                request_id=f"drain-{n}",
                                agent_instance=pb.AgentInstanceRef(name="busy"),
                                input=pb.ExecutionInput(message=f"#{n}"),
                            )
                        )
                        for n in range(first, first + 50)
                    )
                )
                ids += [response.execution.id for response in created]
            finals = [await final_state(backends[n % 2], execution_id) for n, execution_id in enumerate(ids)]
            elapsed = time.perf_counter() - started
            for runner in runners:
                runner.signal(signal.SIGTERM)
                assert runner.wait() == 0, runner.stderr
            return finals, elapsed
        finally:
            for backend in backends:
                await backend.aclose()

    try:
        finals, elapsed = asyncio.run(drain())
    finally:
        for home in homes:
            for process in home.processes:
                process.stop()  # SIGKILL if still running: a failed test leaves no runner behind

    assert [final.status.phase for final in finals] == [Phase.SUCCEEDED] * COUNT
    assert all(final.status.output.text == "Hello, world" for final in finals)
    claims: collections.Counter[str] = collections.Counter()
    per_runner: collections.Counter[str] = collections.Counter()
    for home in homes:
        (process,) = home.processes
        for execution_id, runner_id in CLAIM.findall(process.stderr):
            claims[execution_id] += 1
            per_runner[runner_id] += 1
        assert "Error" not in process.stderr and "Traceback" not in process.stderr, process.stderr
    assert claims == dict.fromkeys((final.id for final in finals), 1), "each execution claimed exactly once"
    assert {final.status.runner_id for final in finals} == {"runner-a", "runner-b"}, per_runner
    assert dict(per_runner) == dict(collections.Counter(final.status.runner_id for final in finals))
    assert model.count("stream") == COUNT, "each execution called the model once"
    print(
        f"\nrunners through two replicas: {COUNT} executions SUCCEEDED in {elapsed:.1f} s, each claimed once "
        f"(runner-a on replica A {per_runner['runner-a']}, runner-b on replica B {per_runner['runner-b']}); "
        f"{model.count('stream')} model calls"
    )
