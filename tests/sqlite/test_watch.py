"""WatchExecution in this process sees what another process writes: every version, promptly."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import finish, read_message, seed, send, start_worker

UPDATES = 25  # RUNNING -> RUNNING progress updates between the claim and SUCCEEDED


async def _watch(db_path, execution_id: str, worker, lockstep: bool) -> list[tuple[pb.Execution, float]]:
    """Every message of one watch, with the monotonic time it arrived."""
    received: list[tuple[pb.Execution, float]] = []
    async with SqliteBackend(db_path) as backend:  # default poll interval (20 ms)
        stream = backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id))
        async for response in stream:
            received.append((response.execution, time.monotonic()))
            if len(received) == 1 or lockstep:
                send(worker)  # the first: start writing; in lockstep: write the next version
    return received


async def _run(db_path, mode: str) -> tuple[list[tuple[pb.Execution, float]], list[dict]]:
    [execution] = await seed(db_path, executions=1)
    worker = start_worker(
        "watch_writer", {"db": str(db_path), "execution_id": execution.id, "mode": mode, "updates": UPDATES}
    )
    try:
        assert read_message(worker) == {"ready": True}
        received = await asyncio.wait_for(
            _watch(db_path, execution.id, worker, mode.startswith("lockstep")), timeout=30
        )
        written = [read_message(worker) for _ in range(UPDATES + 2)]
        finish(worker)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    return received, written


def _check_complete(received: list[tuple[pb.Execution, float]], written: list[dict]) -> None:
    versions = [execution.version for execution, _ in received]
    total = UPDATES + 3  # created, claimed, UPDATES updates, SUCCEEDED
    assert versions == list(range(1, total + 1))  # every version, once, in order, nothing after the end
    assert [w["version"] for w in written] == list(range(2, total + 1))
    phases = [execution.status.phase for execution, _ in received]
    assert phases == [pb.ExecutionPhase.PENDING] + [pb.ExecutionPhase.RUNNING] * (UPDATES + 1) + [
        pb.ExecutionPhase.SUCCEEDED
    ]
    messages = [execution.status.message for execution, _ in received]
    assert messages == ["", "claimed", *(f"progress {n}" for n in range(UPDATES)), "done"]
    assert received[-1][0].status.output.text == "answer"


async def test_a_burst_of_writes_from_another_process_is_seen_version_by_version(db_path):
    """The writer does not wait for the watcher: versions arrive faster than they are polled."""
    received, written = await _run(db_path, "burst")
    _check_complete(received, written)


@pytest.mark.parametrize("mode", ["lockstep", "lockstep-jitter"])
async def test_each_write_from_another_process_reaches_the_watcher_promptly(db_path, capsys, mode):
    """In lockstep (the writer waits for each version to arrive), timing each write's delivery.

    Latency is from the writer's ``UpdateExecutionStatus`` returning (committed) to the watcher
    receiving that version; both read the system-wide monotonic clock. In plain lockstep each write
    lands just after a poll (the watcher answers right after one): the worst case, about one poll
    interval. With jitter the writer first waits a random 0-25 ms: the typical case.
    """
    received, written = await _run(db_path, mode)
    _check_complete(received, written)
    arrived = {execution.version: at for execution, at in received}
    latencies = sorted(arrived[w["version"]] - w["t"] for w in written)
    median = statistics.median(latencies)
    p90 = latencies[int(0.9 * (len(latencies) - 1))]
    with capsys.disabled():
        print(
            f"\n[sqlite watch, {mode}] cross-process latency over {len(latencies)} writes (poll interval 20 ms): "
            f"median {median * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
    # Promptly: polling (20 ms), not the 1 s fallback wake-up, delivers the changes. A loaded CI
    # machine can stall one delivery past the fallback (seen: 1.0 s), so the mechanism is checked
    # on the whole: the median is a few polls, and at most one write in ten waited for the fallback.
    assert median < 0.1
    assert sum(latency >= 0.5 for latency in latencies) <= len(latencies) // 10
