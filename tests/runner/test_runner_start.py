"""``stigmer runner start`` as real processes: draining a served backend, kill -9, SIGTERM."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import re
import secrets
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.remote_fixtures import write_token_file

from .conftest import WAIT, Home, Process, served

Phase = pb.ExecutionPhase
CALL = re.compile(r"^(?P<at>\S+ \S+) DEBUG \S+: call /[\w.]+/(?P<method>\w+) from ")
CLAIM = re.compile(r"^(exe_\w+): running as (\S+)$", re.MULTILINE)


async def final_state(backend, execution_id: str, timeout: float = WAIT) -> pb.Execution:
    """The execution once terminal, followed with ``WatchExecution`` (no polling)."""
    async with asyncio.timeout(timeout):
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            if response.execution.status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
                return response.execution
    raise AssertionError(f"the watch of {execution_id} ended before a terminal phase")


async def create(backend, agent: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        request = pb.CreateExecutionRequest(
            request_id=f"drain-{n}", agent_instance=pb.AgentInstanceRef(name=agent), input=pb.ExecutionInput(f"#{n}")
        )
        ids.append((await backend.create_execution(request)).execution.id)
    return ids


def test_two_runners_drain_a_served_backend_each_execution_claimed_once(home, model, tmp_path):
    with served(tmp_path, home, "busy", "delayed", model.endpoint) as (server, token):  # 100 ms per answer

        async def drain() -> list[pb.Execution]:
            async with CloudBackend(server.endpoint, token=token) as backend:
                runners = [home.start("runner", "start", "--runner-id", name) for name in ("runner-a", "runner-b")]
                for runner in runners:  # both are serving (and listing, at most 2 s apart) before the work arrives
                    await asyncio.to_thread(runner.wait_for, "started")
                ids = await create(backend, "busy", 200)
                finals = [await final_state(backend, execution_id, timeout=300) for execution_id in ids]
                for runner in runners:
                    runner.signal(signal.SIGTERM)
                    assert runner.wait() == 0, runner.stderr
                return finals

        finals = asyncio.run(drain())

    assert [final.status.phase for final in finals] == [Phase.SUCCEEDED] * 200
    assert all(final.status.output.text == "done" for final in finals)
    claims = collections.Counter()
    per_runner = collections.Counter()
    for process in home.processes[-2:]:
        for execution_id, runner_id in CLAIM.findall(process.stderr):
            claims[execution_id] += 1
            per_runner[runner_id] += 1
        assert "Error" not in process.stderr and "Traceback" not in process.stderr, process.stderr
    assert claims == dict.fromkeys((final.id for final in finals), 1), "each execution claimed exactly once"
    assert {final.status.runner_id for final in finals} == {"runner-a", "runner-b"}, per_runner
    assert model.count("delayed") == 200, "each execution called the model once"


@pytest.mark.parametrize("where", ["local file", "stigmer server"])
def test_a_runner_killed_outright_leaves_its_executions_failed_within_one_lease(home, model, tmp_path, where):
    lease = timedelta(seconds=2)
    with contextlib.ExitStack() as stack:
        if where == "stigmer server":
            server, token = stack.enter_context(served(tmp_path, home, "slow", "slow", model.endpoint))
        else:
            home.agent("slow", "slow", model.endpoint)
        ids = [home.run("agent", "execute", "slow", "hi", "--detach").stdout.strip() for _ in range(3)]
        runner = home.start("runner", "start", "--lease", "2", "--concurrency", "3", "--runner-id", "doomed")
        for execution_id in ids:
            runner.wait_for(f"{execution_id}: running as")
        assert model.streaming.wait(WAIT), "no model call started"
        runner.popen.send_signal(signal.SIGKILL)
        runner.wait()
        killed_at = datetime.now(UTC)

        async def after_kill() -> list[pb.Execution]:
            if where == "stigmer server":
                backend = CloudBackend(server.endpoint, token=token)
            else:
                backend = SqliteBackend(home.path / "local.db")
            async with backend:
                return await asyncio.gather(*(final_state(backend, execution_id) for execution_id in ids))

        finals = asyncio.run(after_kill())
    for final in finals:
        assert final.status.phase == Phase.FAILED and final.status.error.code == "LEASE_EXPIRED", final.status
        assert final.status.runner_id == "doomed"
        # The lease ends at most one lease after the last renewal, which came before the kill.
        assert final.status.end_time <= killed_at + lease


def test_sigterm_stops_claiming_and_cancels_what_outlasts_the_grace_period(home, model):
    home.agent("slow", "slow", model.endpoint)
    execution_id = home.run("agent", "execute", "slow", "hi", "--detach").stdout.strip()
    runner = home.start("runner", "start", "--grace", "0.5", "--runner-id", "leaving")
    runner.wait_for(f"{execution_id}: running as")
    assert model.streaming.wait(WAIT), "the model call never started"
    stopped = time.monotonic()
    runner.signal(signal.SIGTERM)
    assert runner.wait() == 0, runner.stderr
    assert time.monotonic() - stopped < 0.5 + 10
    assert model.disconnected.wait(WAIT), "the model call was not aborted"
    assert "runner leaving stopped" in runner.stderr

    async def after() -> pb.Execution:
        async with SqliteBackend(home.path / "local.db") as backend:
            return (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution

    final = asyncio.run(after())
    assert final.status.phase == Phase.CANCELLED
    assert final.status.message == "runner leaving stopped before the execution finished"


def test_a_runner_for_an_agent_not_applied_says_so_and_serves_it_once_applied(home, model):
    runner = home.start("runner", "start", "--agent", "later")
    runner.wait_for("agent instance 'later' not found: nothing of it to run until it is applied")
    home.agent("later", "stream", model.endpoint)
    execution_id = home.run("agent", "execute", "later", "hi", "--detach").stdout.strip()
    runner.wait_for(f"{execution_id}: SUCCEEDED")
    runner.signal(signal.SIGTERM)
    assert runner.wait() == 0, runner.stderr
    assert runner.stderr.count("not found") == 1, runner.stderr


def test_an_idle_runner_serves_only_its_agents_and_stops_at_once(home, model):
    home.agent("mine", "stream", model.endpoint)
    home.agent("theirs", "stream", model.endpoint)
    # More of theirs, older, than one listing page (twice the concurrency): they must not hide mine.
    theirs = [home.run("agent", "execute", "theirs", "hi", "--detach").stdout.strip() for _ in range(10)]
    mine = home.run("agent", "execute", "mine", "hi", "--detach").stdout.strip()
    runner = home.start("runner", "start", "--agent", "mine", "--concurrency", "2")
    runner.wait_for(f"{mine}: SUCCEEDED")
    runner.signal(signal.SIGINT)
    assert runner.wait() == 0, runner.stderr
    assert not any(execution_id in runner.stderr for execution_id in theirs)
    pending = home.run("execution", "list", "--phase", "pending").stdout
    assert all(execution_id in pending for execution_id in theirs)


def test_a_cancel_through_a_server_aborts_a_remote_runners_model_call(home, model, tmp_path):
    with served(tmp_path, home, "slow", "slow", model.endpoint):
        execution_id = home.run("agent", "execute", "slow", "hi", "--detach").stdout.strip()
        runner = home.start("runner", "start")
        runner.wait_for(f"{execution_id}: running as")
        assert model.streaming.wait(WAIT), "the model call never started"
        cancel = home.start("execution", "cancel", execution_id, "--reason", "not needed")
        assert cancel.wait() == 0, cancel.stderr
        assert model.disconnected.wait(WAIT), "the remote runner did not abort the model call"
        runner.wait_for(f"{execution_id}: stopped, the execution is CANCELLED")
        runner.signal(signal.SIGTERM)
        assert runner.wait() == 0, runner.stderr


def test_a_second_signal_ends_the_grace_period_at_once(home, model):
    home.agent("slow", "slow", model.endpoint)
    execution_id = home.run("agent", "execute", "slow", "hi", "--detach").stdout.strip()
    runner = home.start("runner", "start", "--grace", "3600", "--runner-id", "hurried")
    runner.wait_for(f"{execution_id}: running as")
    assert model.streaming.wait(WAIT), "the model call never started"
    runner.signal(signal.SIGINT)
    runner.wait_for("signal again: now")
    runner.signal(signal.SIGINT)
    assert runner.wait() == 0, runner.stderr
    assert model.disconnected.wait(WAIT)
    assert home.run("execution", "get", execution_id).stdout.count("CANCELLED") == 1


def test_an_idle_runner_process_asks_the_server_for_work_less_and_less_often(home, tmp_path):
    """``stigmer runner start`` as it ships (no tuning flags) against ``stigmer server --verbose``: no busy loop."""
    token = secrets.token_hex(24)
    server_home = Home(tmp_path / "server-home")
    server_home.path.mkdir(mode=0o700)
    token_file = write_token_file(tmp_path / "token", token)
    server = Process(["server", "--port", "0", "--token-file", str(token_file), "--verbose"], server_home.env)
    home.processes.append(server)
    endpoint = server.wait_for("\n", stream="stdout").removeprefix("listening on ").strip()
    home.run("login", "--endpoint", endpoint, "--plaintext", input=token)
    runner = home.start("runner", "start")
    log = server.wait_for("/ListExecutions from", count=6)
    runner.signal(signal.SIGTERM)
    assert runner.wait() == 0, runner.stderr
    calls = [CALL.search(line) for line in log.splitlines()]
    made = [(found["method"], datetime.strptime(found["at"], "%Y-%m-%d %H:%M:%S,%f")) for found in calls if found]
    first = next(n for n, (method, _) in enumerate(made) if method == "ListExecutions")
    listed = [at for _, at in made[first:]]
    assert {method for method, _ in made[first:]} == {"ListExecutions"}, "an idle runner only lists"
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(listed[:6])]
    # Back-off from 0.2 s, doubling, to 2 s; the log's milliseconds and the timer's slack: 5 %.
    for gap, least in zip(gaps, [0.2, 0.4, 0.8, 1.6, 2.0], strict=True):
        assert gap >= least * 0.95, gaps


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("bad id/x", "'bad id/x' is not a valid runner id (^[A-Za-z0-9._:-]+$, at most 128)"),
        ("r" * 129, "is not a valid runner id"),
        ("", "must not be empty (leave the option out for HOSTNAME-PID)"),
    ],
)
def test_a_runner_id_the_contract_refuses_is_refused_before_the_runner_starts(home, given, said):
    """Regression: the runner started, and each claim was refused (in a busy loop, before the worker's fix)."""
    runner = home.start("runner", "start", "--runner-id", given)
    assert runner.wait() == 2, runner.stderr  # without the check: it serves until stopped, and this times out
    error = runner.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for '--runner-id': ") and said in error, error
    assert "started" not in runner.stderr


def test_a_runner_whose_credential_names_another_runner_stops_with_one_line(home, tmp_path, model):
    """Regression: a runner token bound to runner-1, started as runner-2: every claim was PERMISSION_DENIED,
    one line every 2 s for ever, a process that looked alive to whatever supervised it."""
    server_home = Home(tmp_path / "server-home")
    server_home.path.mkdir(mode=0o700)
    server_home.agent("bound", "echo", model.endpoint)
    execution_id = server_home.run("agent", "execute", "bound", "hi", "--detach").stdout.strip()
    runner_token = secrets.token_hex(20)
    tokens_file = write_token_file(tmp_path / "tokens", f"runner runner-1 {runner_token}\n")
    with ServerProcess.start(["--tokens-file", str(tokens_file)], env=server_home.env) as server:
        home.run("login", "--endpoint", server.endpoint, "--plaintext", input=runner_token)
        runner = home.start("runner", "start", "--runner-id", "runner-2")
        assert runner.wait() == 1, runner.stderr  # before the fix: it served until stopped, and this timed out
    error = runner.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: the backend refuses runner runner-2: PERMISSION_DENIED: "), runner.stderr
    assert runner.stderr.count("PERMISSION_DENIED") == 1, runner.stderr
    shown = server_home.run("execution", "get", execution_id, "-o", "json").stdout
    assert '"PENDING"' in shown or "EXECUTION_PHASE_PENDING" in shown, shown
