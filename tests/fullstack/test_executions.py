"""Executions through Temporal: one workflow each, cancel, a worker killed -9, and no secret in any history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.fullstack.requirements import temporal_binary
from stigmer_backend.fullstack.workflow import WORKFLOW, ExecutionEnd
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.runner.fake_model import leaked_forms

from .conftest import ENV_SECRET, SECRET

Phase = pb.ExecutionPhase
ENDED = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)
WAIT = 120.0
"""A bound for what takes a few seconds on an idle machine; never a sleep."""


def _execute_detached(tier2, agent: str, message: str, *extra: str) -> str:
    result = tier2.home.run("agent", "execute", agent, message, "--detach", *extra)
    assert "runs as a Temporal workflow" in result.stderr
    return result.stdout.strip()


async def execute_detached(tier2, agent: str, message: str, *extra: str) -> str:
    """`stigmer agent execute --detach`, in this process (the CLI runs its own event loop: in a thread)."""
    return await asyncio.to_thread(_execute_detached, tier2, agent, message, *extra)


async def final_state(backend, execution_id: str) -> pb.Execution:
    async with asyncio.timeout(WAIT):
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            if response.execution.status.phase in ENDED:
                return response.execution
    raise AssertionError(f"the watch of {execution_id} ended before a terminal phase")


async def client_of(tier2) -> Client:
    return await Client.connect(tier2.state["temporal_address"])


async def closed(handle) -> None:
    """Until the workflow closes, however it ends (its result, or the failure a cancel raises)."""
    async with asyncio.timeout(WAIT):
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()


def backend_of(tier2) -> SqliteBackend:
    return SqliteBackend(tier2.home.path / "local.db")


async def test_fifty_executions_all_succeed_each_as_exactly_one_workflow(tier2):
    began = time.monotonic()
    ids = [await execute_detached(tier2, "bot", f"#{n}") for n in range(50)]
    async with backend_of(tier2) as backend:
        finals = await asyncio.gather(*(final_state(backend, execution_id) for execution_id in ids))
    took = time.monotonic() - began
    assert [final.status.phase for final in finals] == [Phase.SUCCEEDED] * 50
    assert {final.status.output.text for final in finals} == {"Hello, world"}
    assert {final.status.runner_id.rsplit("-", 1)[0] for final in finals} <= {"local-worker-1", "local-worker-2"}

    client = await client_of(tier2)
    for execution_id in ids:
        end = await client.get_workflow_handle(execution_id, result_type=ExecutionEnd).result()
        assert (end.execution_id, end.phase, end.attempt) == (execution_id, "SUCCEEDED", 1)
    runs: dict[str, int] = {}
    async for found in client.list_workflows(f"WorkflowType = '{WORKFLOW}'"):
        runs[found.id] = runs.get(found.id, 0) + 1
    assert {execution_id: runs.get(execution_id) for execution_id in ids} == dict.fromkeys(ids, 1)
    healthy = await asyncio.to_thread(tier2.stigmer, "local", "status")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    print(f"50 executions: all SUCCEEDED {took:.1f} s after the first `agent execute --detach`; {len(runs)} workflows")

    # A repeated start of the same execution is refused by Temporal: still one workflow, one run.
    from stigmer_backend.fullstack.client import start_workflow
    from stigmer_backend.fullstack.stack import Stack

    stack = Stack(**{**tier2.state, "parts": []})
    assert await start_workflow(stack, ids[0], 30) is False


async def test_execution_cancel_ends_it_cancelled_and_closes_the_model_call_at_once(tier2):
    tier2.model.streaming.clear()
    tier2.model.disconnected.clear()
    execution_id = await execute_detached(tier2, "slow", "think")
    assert await asyncio.to_thread(tier2.model.streaming.wait, WAIT)
    started = time.monotonic()
    cancelled = await asyncio.to_thread(tier2.home.run, "execution", "cancel", execution_id)
    assert await asyncio.to_thread(tier2.model.disconnected.wait, WAIT)
    closed_after = time.monotonic() - started
    async with backend_of(tier2) as backend:
        final = await final_state(backend, execution_id)
    assert final.status.phase == Phase.CANCELLED
    assert final.status.message == "cancelled from the command line"
    recorded_after = final.status.end_time.timestamp() - (time.time() - (time.monotonic() - started))
    handle = (await client_of(tier2)).get_workflow_handle(execution_id, result_type=ExecutionEnd)
    await closed(handle)
    workflow_closed_after = time.monotonic() - started
    description = await handle.describe()
    # Either the cancel request reached the workflow first (CANCELED) or the activity, which saw
    # the backend's CANCELLED through its watch, returned first (COMPLETED with that phase).
    assert description.status in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.COMPLETED)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        assert (await handle.result()).phase == "CANCELLED"
    else:
        assert "Temporal workflow" in cancelled.stderr
    # The mechanism is the backend's watch (~20 ms), not a lease or a heartbeat: far below 1 s when idle.
    assert recorded_after < 10.0, recorded_after
    assert closed_after < 10.0, closed_after
    assert workflow_closed_after < 10.0, workflow_closed_after
    print(
        f"cancel: CANCELLED recorded {recorded_after * 1000:.0f} ms, model connection closed "
        f"{closed_after * 1000:.0f} ms, workflow closed {workflow_closed_after * 1000:.0f} ms "
        "after `stigmer execution cancel` began"
    )


async def test_a_worker_killed_mid_activity_fails_the_execution_lease_expired_and_the_retry_reports_it(tier2):
    lease = 5
    tier2.model.streaming.clear()
    execution_id = await execute_detached(tier2, "slow", "think", "--lease", str(lease))
    assert await asyncio.to_thread(tier2.model.streaming.wait, WAIT)
    async with backend_of(tier2) as backend:
        running = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
        assert running.status.phase == Phase.RUNNING
        holder = re.fullmatch(r"local-worker-\d+-(\d+)", running.status.runner_id)
        assert holder is not None, running.status.runner_id
        os.kill(int(holder.group(1)), signal.SIGKILL)
        killed_at, killed_clock = time.time(), time.monotonic()
        final = await final_state(backend, execution_id)
        seen_after = time.monotonic() - killed_clock
    assert final.status.phase == Phase.FAILED
    assert final.status.error.code == "LEASE_EXPIRED"
    assert running.status.runner_id in final.status.error.message  # the dead attempt's lease, not a report
    # The end time the backend records is the lease's expiry: at most one lease after the kill.
    assert final.status.end_time.timestamp() <= killed_at + lease + 0.5
    handle = (await client_of(tier2)).get_workflow_handle(execution_id, result_type=ExecutionEnd)
    async with asyncio.timeout(WAIT):
        end = await handle.result()
    workflow_after = time.monotonic() - killed_clock
    # Temporal's heartbeat timeout (= the lease) retried the activity on the other worker, which
    # did not reclaim the execution: it followed it to the end the contract gave it.
    assert (end.phase, end.error_code) == ("FAILED", "LEASE_EXPIRED")
    assert end.attempt >= 2
    # Seen within one lease when idle, the workflow about one more; 10x margins on a loaded machine.
    assert seen_after < 10 * lease, seen_after
    assert workflow_after < 10 * 2 * lease, workflow_after
    print(f"kill -9: FAILED LEASE_EXPIRED seen after {seen_after:.2f} s, workflow closed after {workflow_after:.2f} s")


async def test_agent_execute_without_detach_follows_the_workflow_and_prints_the_answer(tier2):
    done = await asyncio.to_thread(tier2.stigmer, "agent", "execute", "bot", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world\n"
    execution_id = re.search(r"(exe_\w+): running as a Temporal workflow", done.stderr).group(1)
    end = await (await client_of(tier2)).get_workflow_handle(execution_id, result_type=ExecutionEnd).result()
    assert end.phase == "SUCCEEDED"


async def test_ctrl_c_in_agent_execute_cancels_the_execution_and_its_workflow(tier2):
    tier2.model.streaming.clear()
    process = tier2.home.start("agent", "execute", "slow", "think")
    announced = await asyncio.to_thread(process.wait_for, "running as a Temporal workflow")
    execution_id = re.search(r"(exe_\w+): running as a Temporal workflow", announced).group(1)
    assert await asyncio.to_thread(tier2.model.streaming.wait, WAIT)
    process.signal(signal.SIGINT)
    assert await asyncio.to_thread(process.wait) == 130
    async with backend_of(tier2) as backend:
        final = await final_state(backend, execution_id)
    assert final.status.phase == Phase.CANCELLED
    assert final.status.message == "interrupted (Ctrl-C) in `stigmer agent execute`"
    handle = (await client_of(tier2)).get_workflow_handle(execution_id, result_type=ExecutionEnd)
    await closed(handle)
    description = await handle.describe()
    assert description.status in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.COMPLETED)


async def test_commands_that_use_temporal_exit_with_their_own_code_never_an_abort(tier2):
    # The Temporal SDK's native threads can abort CPython's teardown (SIGABRT after the work is
    # done, about 1 in 20 runs on a loaded machine); 8 at a time is such a load.
    async def one(n: int) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(tier2.stigmer, "agent", "execute", "bot", f"hi #{n}", "--detach")

    done = []
    for batch in range(6):
        done += await asyncio.gather(*(one(8 * batch + k) for k in range(8)))
    assert [run.returncode for run in done] == [0] * len(done), [run.stderr[-300:] for run in done if run.returncode]
    assert all(re.fullmatch(r"exe_\w+\n", run.stdout) for run in done)


async def test_no_workflow_history_holds_a_secret_in_any_encoding(tier2):
    """Last in this module, so that it scans the history of every workflow the module ran."""
    ids = [await execute_detached(tier2, "leaky", f"leak #{n}") for n in range(3)]
    async with backend_of(tier2) as backend:
        finals = await asyncio.gather(*(final_state(backend, execution_id) for execution_id in ids))
    assert {final.status.phase for final in finals} == {Phase.SUCCEEDED}
    assert all("***" in final.status.output.text for final in finals)
    assert SECRET in {seen.token for seen in tier2.model.requests if seen.model == "leaky"}  # the key was in play
    client = await client_of(tier2)
    every = [found.id async for found in client.list_workflows(f"WorkflowType = '{WORKFLOW}'")]
    assert set(ids) <= set(every)
    forms = [form for secret in (SECRET, ENV_SECRET) for form in leaked_forms(secret)]
    assert len(set(forms)) == 10
    events = 0
    for workflow_id in every:
        shown = subprocess.run(
            [
                temporal_binary(),
                "workflow",
                "show",
                "--workflow-id",
                workflow_id,
                "--output",
                "json",
                "--address",
                tier2.state["temporal_address"],
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        history = shown.stdout
        assert workflow_id in history  # the history itself, readable
        events += len(json.loads(history)["events"])
        assert [form for form in forms if form in history] == [], workflow_id
    # What Temporal stored on disk (histories, visibility) and the stack's logs hold none either; Temporal
    # stores payloads as plain JSON bytes, so the execution ids are there to be found.
    local = tier2.home.path / "local"
    stored = b"".join(path.read_bytes() for path in local.glob("temporal.db*"))
    assert all(execution_id.encode() in stored for execution_id in ids)
    logs = b"".join(path.read_bytes() for path in local.glob("*.log"))
    assert [form for form in forms if form.encode() in stored or form.encode() in logs] == []
    print(f"secret scan: {len(every)} histories, {events} events, {len(forms)} forms of 2 secrets: 0 hits")
