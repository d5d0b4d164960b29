"""The runner's lifecycle figures (issue 9's "Done when"), measured with real processes on loopback.

    .venv/bin/python benchmarks/runner_lifecycle.py [--rounds N] [--idle-seconds S] [--only NAME...]

Every figure comes from ``stigmer`` subprocesses (``agent execute``, ``runner start``,
``execution cancel``, ``stigmer server``) against a fake OpenAI-compatible model on 127.0.0.1
(``tests/runner/fake_model.py``: the same one the tests use), each round in a fresh
``STIGMER_HOME``. Times of the form "to CANCELLED" are the stored ``update_time`` of the
CANCELLED version minus the wall-clock moment the signal or command was sent (same machine,
same clock). Medians with min/max over the rounds.

- ``drain``: two ``runner start`` + one ``stigmer server``, 200 detached executions (100 ms model):
  seconds from the first CreateExecution to the last SUCCEEDED, claims per runner, executions
  claimed more than once, error lines.
- ``sigint``: SIGINT to ``agent execute`` mid-stream: to CANCELLED, to the model's connection
  closed, to the process exit (code 130).
- ``cancel``: ``stigmer execution cancel`` from another process: from the command's start to
  CANCELLED (its start-up included), and from CANCELLED to the model's connection closed.
- ``retry``: 429 ``Retry-After: 1`` then 200: the gap between the two requests the model saw.
- ``unauthorized``: 401: requests the model saw, seconds to exit (code 3).
- ``kill``: ``runner start --lease 2 --concurrency 3`` holding 3 executions is killed with
  SIGKILL: seconds until a watcher sees each FAILED ``LEASE_EXPIRED`` (local file and through a server).
- ``idle``: an idle ``runner start`` against ``stigmer server -v``: calls per minute by method.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the fake model and process fixtures of tests/runner

from stigmer_backend.backends.cloud import CloudBackend  # noqa: E402
from stigmer_backend.backends.sqlite import SqliteBackend  # noqa: E402
from stigmer_backend.gen.stigmer.backend import v1 as pb  # noqa: E402
from stigmer_backend.server.launch import ServerProcess  # noqa: E402
from tests.remote_fixtures import write_token_file  # noqa: E402
from tests.runner.conftest import Home  # noqa: E402
from tests.runner.fake_model import FakeModel, start_fake_model, stop_fake_model  # noqa: E402

Phase = pb.ExecutionPhase
TERMINAL = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)
CLAIM = re.compile(r"^(exe_\w+): running as (\S+)$", re.MULTILINE)
WAIT = 120.0


@contextlib.contextmanager
def fresh() -> Iterator[tuple[Path, Home, FakeModel]]:
    """A private temporary folder, a ``Home`` in it and a fake model; everything started is stopped."""
    with tempfile.TemporaryDirectory(prefix="stigmer-lifecycle-") as tmp:
        path = Path(tmp) / "home"
        path.mkdir(mode=0o700)
        home, model = Home(path), start_fake_model()
        try:
            yield Path(tmp), home, model
        finally:
            for process in home.processes:
                process.stop()
            stop_fake_model(model)


@contextlib.contextmanager
def served(
    tmp: Path, home: Home, agents: dict[str, str], endpoint: str, *flags: str
) -> Iterator[tuple[ServerProcess, str]]:
    """A ``stigmer server`` holding ``agents`` (name -> model) with ``home`` logged in; yields it and its token."""
    token = secrets.token_hex(24)
    server_home = Home(tmp / "server-home")
    server_home.path.mkdir(mode=0o700)
    for name, model in agents.items():
        server_home.agent(name, model, endpoint)
    token_file = write_token_file(tmp / "token", token)
    with ServerProcess.start(["--token-file", str(token_file), *flags], env=server_home.env) as server:
        home.run("login", "--endpoint", server.endpoint, "--plaintext", input=token)
        yield server, token


async def watch_until_terminal(backend: pb.BackendServiceBase, execution_id: str) -> tuple[pb.Execution, float]:
    """The execution once terminal and the wall-clock moment this watcher saw it."""
    async with asyncio.timeout(WAIT):
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            assert response.execution is not None and response.execution.status is not None
            if response.execution.status.phase in TERMINAL:
                return response.execution, time.time()
    raise RuntimeError(f"the watch of {execution_id} ended before a terminal phase")


async def watch_all(home: Home, endpoint: str | None, token: str, ids: list[str]) -> list[tuple[pb.Execution, float]]:
    """Each execution once terminal, watched at once through ``endpoint`` (a server) or the home's file."""
    backend = CloudBackend(endpoint, token=token) if endpoint else SqliteBackend(home.path / "local.db")
    async with backend:
        return await asyncio.gather(*(watch_until_terminal(backend, i) for i in ids))


def stored(home: Home, execution_id: str) -> pb.Execution:
    async def get() -> pb.Execution:
        async with SqliteBackend(home.path / "local.db") as backend:
            found = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
            assert found is not None
            return found

    return asyncio.run(get())


def seconds_after(moment: datetime | None, wall: float) -> float:
    assert moment is not None
    return moment.timestamp() - wall


def drain(rounds: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        with fresh() as (tmp, home, model), served(tmp, home, {"busy": "delayed"}, model.endpoint) as (server, token):

            async def run() -> tuple[list[pb.Execution], float]:
                async with CloudBackend(server.endpoint, token=token) as backend:
                    runners = [home.start("runner", "start", "--runner-id", name) for name in ("runner-a", "runner-b")]
                    for runner in runners:
                        await asyncio.to_thread(runner.wait_for, "started")
                    began = time.monotonic()
                    ids = []
                    for n in range(200):
                        request = pb.CreateExecutionRequest(
                            request_id=f"drain-{n}",
                            agent_instance=pb.AgentInstanceRef(name="busy"),
                            input=pb.ExecutionInput(message=f"#{n}"),
                        )
                        created = (await backend.create_execution(request)).execution
                        assert created is not None
                        ids.append(created.id)
                    finals = [(await watch_until_terminal(backend, i))[0] for i in ids]
                    took = time.monotonic() - began
                    for runner in runners:
                        runner.signal(signal.SIGTERM)
                        assert runner.wait() == 0, runner.stderr
                    return finals, took

            finals, took = asyncio.run(run())
            claims: collections.Counter[str] = collections.Counter()
            per_runner: collections.Counter[str] = collections.Counter()
            errors = 0
            for process in home.processes:
                for execution_id, runner_id in CLAIM.findall(process.stderr):
                    claims[execution_id] += 1
                    per_runner[runner_id] += 1
                errors += sum(1 for line in process.stderr.splitlines() if "Error" in line or "Traceback" in line)
            figures["seconds to drain 200"].append(took)
            figures["SUCCEEDED"].append(sum(1 for f in finals if f.status and f.status.phase == Phase.SUCCEEDED))
            figures["claims by runner-a"].append(per_runner["runner-a"])
            figures["claims by runner-b"].append(per_runner["runner-b"])
            figures["executions claimed twice or more"].append(sum(1 for n in claims.values() if n > 1))
            figures["error lines of the runners"].append(errors)
            figures["model requests"].append(model.count("delayed"))
    return figures


def interrupted(rounds: int, how: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        with fresh() as (_tmp, home, model):
            home.agent("slow", "slow", model.endpoint)
            execute = home.start("agent", "execute", "slow", "hi")
            execute.wait_for("thinking", stream="stdout")
            execution_id = execute.wait_for("running as").split(":")[0].strip()
            sent = time.time()
            if how == "sigint":
                execute.signal(signal.SIGINT)
            else:
                home.start("execution", "cancel", execution_id, "--reason", "measured")
            assert model.disconnected.wait(WAIT)
            closed = time.time()
            code = execute.wait()
            exited = time.time()
            final = stored(home, execution_id)
            assert final.status is not None and final.status.phase == Phase.CANCELLED, final
            cancelled = seconds_after(final.update_time, sent)
            if how == "sigint":
                figures["exit code"].append(code)
                figures["s SIGINT -> CANCELLED stored"].append(cancelled)
                figures["s SIGINT -> model connection closed"].append(closed - sent)
                figures["s SIGINT -> process exited"].append(exited - sent)
            else:
                figures["exit code of agent execute"].append(code)
                figures["s `execution cancel` started -> CANCELLED stored"].append(cancelled)
                figures["s CANCELLED stored -> model connection closed"].append(closed - sent - cancelled)
    return figures


def retry(rounds: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        with fresh() as (_tmp, home, model):
            home.agent("flaky", "flaky", model.endpoint)
            execute = home.start("agent", "execute", "flaky", "hi")
            figures["exit code"].append(execute.wait())
            first, second = model.requests
            figures["s between the 429 and the retry"].append(second.time - first.time)
    return figures


def unauthorized(rounds: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        with fresh() as (_tmp, home, model):
            home.agent("locked", "unauthorized", model.endpoint)
            started = time.monotonic()
            execute = home.start("agent", "execute", "locked", "hi")
            figures["exit code"].append(execute.wait())
            exited = time.monotonic()
            figures["s start -> exit (process start-up included)"].append(exited - started)
            figures["s the 401 sent -> exit"].append(exited - model.requests[0].time)
            figures["requests the model saw"].append(model.count("unauthorized"))
            said = execute.stderr.strip().splitlines()[-1]
    print(f"   its error line: {said}")
    return figures


def killed(rounds: int, remote: bool) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = collections.defaultdict(list)
    lease = 2.0
    for _ in range(rounds):
        with fresh() as (tmp, home, model), contextlib.ExitStack() as stack:
            server: ServerProcess | None = None
            token = ""
            if remote:
                server, token = stack.enter_context(served(tmp, home, {"slow": "slow"}, model.endpoint))
            else:
                home.agent("slow", "slow", model.endpoint)
            ids = [home.run("agent", "execute", "slow", "hi", "--detach").stdout.strip() for _ in range(3)]
            runner = home.start("runner", "start", "--lease", f"{lease:g}", "--concurrency", "3")
            for execution_id in ids:
                runner.wait_for(f"{execution_id}: running as")
            runner.popen.send_signal(signal.SIGKILL)
            runner.wait()
            killed_at = time.time()
            where = server.endpoint if server is not None else None
            for final, seen in asyncio.run(watch_all(home, where, token, ids)):
                assert final.status is not None and final.status.error is not None
                assert final.status.error.code == "LEASE_EXPIRED", final
                figures[f"s kill -9 -> FAILED LEASE_EXPIRED seen (lease {lease:g} s)"].append(seen - killed_at)
    return figures


def idle(seconds: float) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    for label, extra in (("runner start", ()), ("runner start --agent slow", ("--agent", "slow"))):
        with fresh() as (tmp, home, model), served(tmp, home, {"slow": "slow"}, model.endpoint, "-v") as (server, _):
            before = len(re.findall(r"call (\S+) from", server.stderr_text()))
            runner = home.start("runner", "start", *extra)
            runner.wait_for("started")
            began = time.monotonic()
            time.sleep(seconds)  # the measurement window itself, not a synchronisation
            window = time.monotonic() - began
            calls = re.findall(r"call (\S+) from", server.stderr_text())
            runner.signal(signal.SIGTERM)
            runner.wait()
            by_method = collections.Counter(calls[before:])
            for method, count in sorted(by_method.items()):
                figures[f"{label}: {method.rsplit('/', 1)[-1]} calls/min"] = [count * 60 / window]
            figures[f"{label}: all calls/min"] = [sum(by_method.values()) * 60 / window]
    return figures


def show(title: str, figures: dict[str, list[float]]) -> None:
    print(f"== {title}")
    for name, values in figures.items():
        if len(values) == 1:
            print(f"   {name}: {values[0]:.3f}")
        else:
            median = statistics.median(values)
            print(f"   {name}: median {median:.3f} (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each short measurement")
    parser.add_argument("--drain-rounds", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    names = ["drain", "sigint", "cancel", "retry", "unauthorized", "kill", "idle"]
    parser.add_argument("--only", nargs="+", choices=names, default=names)
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {open('/proc/loadavg').read().split()[:3]}")
    for name in args.only:
        if name == "drain":
            show("drain: 2 runners + 1 server, 200 executions", drain(args.drain_rounds))
        elif name in ("sigint", "cancel"):
            show(f"{name}: agent execute mid-stream", interrupted(args.rounds, name))
        elif name == "retry":
            show("retry: 429 Retry-After: 1, then 200", retry(args.rounds))
        elif name == "unauthorized":
            show("unauthorized: 401", unauthorized(args.rounds))
        elif name == "kill":
            show("kill -9 of a runner holding 3 executions, local file", killed(args.rounds, remote=False))
            show("kill -9 of a runner holding 3 executions, through stigmer server", killed(args.rounds, remote=True))
        elif name == "idle":
            show(f"idle runner against stigmer server -v, {args.idle_seconds:g} s", idle(args.idle_seconds))


if __name__ == "__main__":
    main()
