"""A long-running runner keeps nothing of the executions it ran, and its model calls share one TLS context.

What a runner holds per execution (its task, the masker with the execution's secret values, the
backend's watcher of it) must be gone once the execution ends, or a runner's memory grows with
the work it has done. benchmarks/runner_rss.py measures the RSS; these check the mechanisms.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner.masking import Masker
from stigmer_backend.runner.providers import CallBudget, provider_for
from stigmer_backend.runner.worker import Worker
from tests.secrets.workload import file_source

from .conftest import WAIT
from .fake_model import FakeModel

EXECUTIONS = 6


async def _run_to_the_end(backend: SqliteBackend, execution_ids: list[str]) -> list[pb.ExecutionPhase]:
    """Each execution's phase once it ended: the last event of its WatchExecution stream, read to its end."""
    phases = []
    async with asyncio.timeout(WAIT):
        for execution_id in execution_ids:
            last = None
            async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
                last = response.execution
            assert last is not None and last.status is not None
            phases.append(last.status.phase)
    return phases


async def _create(backend: SqliteBackend, agent: str, n: int) -> str:
    request = pb.CreateExecutionRequest(
        request_id=f"memory-{agent}-{n}",
        agent_instance=pb.AgentInstanceRef(name=agent),
        input=pb.ExecutionInput(f"#{n}"),
    )
    created = (await backend.create_execution(request)).execution
    assert created is not None
    return created.id


async def _apply(backend: SqliteBackend, name: str, model: str, endpoint: str) -> None:
    config = pb.ModelConfig(
        provider="openai-compatible", model=model, endpoint=endpoint, credentials="${.secrets.MODEL_KEY}"
    )
    spec = pb.AgentInstanceSpec(instructions="Answer.", model=config)
    await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=spec))


async def test_a_worker_keeps_nothing_of_the_executions_it_ran(
    tmp_path: Path, model: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    maskers: list[weakref.ref[Masker]] = []
    made: Callable[[Any], Masker] = Masker.from_context

    def recorded(context: Any) -> Masker:
        masker = made(context)
        maskers.append(weakref.ref(masker))
        return masker

    monkeypatch.setattr(Masker, "from_context", recorded)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as backend:
        await backend.put_secret(pb.PutSecretRequest(name="MODEL_KEY", value="k-" + "x" * 30))
        await _apply(backend, "helper", "stream", model.endpoint)
        await _apply(backend, "ponderer", "slow", model.endpoint)
        worker = Worker(backend, concurrency=3, min_idle=0.01, max_idle=0.05)
        serving = asyncio.create_task(worker.run())
        try:
            # One execution cancelled while the model works: its runner stops following it early.
            cancelled = await _create(backend, "ponderer", 0)
            assert await asyncio.to_thread(model.streaming.wait, WAIT)
            await backend.cancel_execution(pb.CancelExecutionRequest(execution_id=cancelled, reason="test"))
            succeeded = [await _create(backend, "helper", n) for n in range(EXECUTIONS)]
            phases = await _run_to_the_end(backend, [cancelled, *succeeded])
            assert phases == [pb.ExecutionPhase.CANCELLED] + [pb.ExecutionPhase.SUCCEEDED] * EXECUTIONS
            if worker._running:  # an execution's task ends just after it reported
                await asyncio.wait(set(worker._running), timeout=WAIT)
            gc.collect()
            # The worker still serves; of the executions it ran, nothing is held.
            assert worker._running == set()
            assert len(maskers) == EXECUTIONS + 1 and [ref() for ref in maskers] == [None] * (EXECUTIONS + 1)
            assert backend._changes._watchers == {}, "a watch the runner left is still registered"
        finally:
            worker.stop()
            await serving


async def test_model_calls_share_one_tls_context(model: FakeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    # Building a context loads the whole CA bundle (~10-40 ms of CPU and a burst of native memory);
    # one per call made a runner's RSS grow with every execution.
    loads: list[object] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    config = pb.ModelConfig(provider="openai-compatible", model="stream", endpoint=model.endpoint)
    for _ in range(3):
        output = await provider_for("openai-compatible").complete(
            pb.AgentInstanceSpec(model=config),
            pb.ExecutionInput(message="hi"),
            {},
            on_text=lambda text: None,
            budget=CallBudget(WAIT, WAIT),
        )
        assert output.text == "Hello, world"
    assert len(loads) <= 1, "each model call loaded the CA bundle again"  # the process's first call builds it
