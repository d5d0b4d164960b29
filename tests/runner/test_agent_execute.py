"""``stigmer agent execute`` as a process, against a fake OpenAI-compatible model on loopback.

Each test asserts the mechanism (what the model server saw, which phase was
stored, which exit code) and bounds waits generously: the CI box is loaded.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.secrets.test_end_to_end import forms

from .conftest import WAIT, served

KEY = "sk-runner-7Qx/9b2c+d4e5f6a7b8c9d0"


def stored(home, execution_id: str) -> dict:
    return json.loads(home.run("execution", "get", execution_id, "-o", "json").stdout)


def only_execution(home) -> dict:
    listed = json.loads(home.run("execution", "list", "-o", "json").stdout)["executions"]
    assert len(listed) == 1, listed
    return listed[0]


def test_the_answer_streams_to_the_screen_as_the_model_writes_it(home, model):
    home.agent("gated", "gated", model.endpoint)
    execute = home.start("agent", "execute", "gated", "hi")
    shown = execute.wait_for("first", stream="stdout")
    assert "second" not in shown, "the rest of the answer is not written yet"
    model.release.set()
    assert execute.wait() == 0, execute.stderr
    assert execute.stdout == "first second\n"
    assert only_execution(home)["status"]["output"]["text"] == "first second", "the output is stored once, whole"


def test_a_429_with_retry_after_is_retried_after_the_delay(home, model):
    home.agent("flaky", "flaky", model.endpoint)
    execute = home.start("agent", "execute", "flaky", "hi")
    assert execute.wait() == 0, execute.stderr
    assert execute.stdout == "ok\n"
    first, second = model.requests
    assert second.time - first.time >= 1.0, "Retry-After: 1 was not honoured"
    assert second.time - first.time < 1.0 + WAIT / 2
    execution_id = only_execution(home)["id"]
    retrying = f"{execution_id}: the model answered HTTP 429; attempt 2 in 1.0 s (as its Retry-After says)"
    assert retrying in execute.stderr.splitlines(), "the wait is shown, not a silent pause"


def test_an_unreachable_model_shows_each_retry_while_it_waits_masked(home, model):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{closed.getsockname()[1]}"
    home.run("secret", "put", "MODEL_KEY", input=KEY)
    # A key pasted into the endpoint by mistake: the lines that name the endpoint mask it.
    home.agent("down", "m", f"{host}/{KEY}/v1", credentials="${.secrets.MODEL_KEY}")
    execute = home.start("agent", "execute", "down", "hi", "--timeout", "60")
    execute.wait_for(f"cannot reach {host}/***/v1/chat/completions; attempt 2 in ")
    execute.signal(signal.SIGINT)
    assert execute.wait() == 130, execute.stderr
    for form in forms(KEY):
        assert form not in (execute.stdout + execute.stderr).encode()
    assert only_execution(home)["status"]["phase"] == "EXECUTION_PHASE_CANCELLED"


def test_a_401_fails_at_once_with_a_clear_error(home, model):
    home.agent("locked", "unauthorized", model.endpoint)
    execute = home.start("agent", "execute", "locked", "hi")
    assert execute.wait() == 3, execute.stderr
    assert model.count("unauthorized") == 1, "a refused credential is not retried"
    error = execute.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: execution exe_") and "FAILED: MODEL_UNAUTHORIZED" in error and "401" in error
    assert only_execution(home)["status"]["error"]["code"] == "MODEL_UNAUTHORIZED"


def test_a_plain_json_answer_is_read_whole(home, model):
    home.agent("plain", "plain", model.endpoint)
    execute = home.start("agent", "execute", "plain", "hi")
    assert execute.wait() == 0, execute.stderr
    assert execute.stdout == "plain answer\n"


def test_ctrl_c_cancels_the_execution_and_closes_the_model_connection(home, model):
    home.agent("slow", "slow", model.endpoint)
    execute = home.start("agent", "execute", "slow", "hi")
    execute.wait_for("thinking", stream="stdout")
    interrupted = time.monotonic()
    execute.signal(signal.SIGINT)
    assert model.disconnected.wait(WAIT), "the model call was not aborted"
    assert execute.wait() == 130, execute.stderr
    elapsed = time.monotonic() - interrupted
    assert elapsed < 10, f"took {elapsed:.1f} s to stop (expected well under 1 s)"
    execution = only_execution(home)
    assert execution["status"]["phase"] == "EXECUTION_PHASE_CANCELLED"
    assert execution["status"]["message"] == "interrupted (Ctrl-C) in `stigmer agent execute`"
    said = f"execution {execution['id']} cancelled: interrupted (Ctrl-C) in `stigmer agent execute`"
    assert said in execute.stderr.splitlines(), "the screen says what became of the execution"
    assert execute.stdout == "thinking\n", "the streamed line is ended before the status line"


def test_a_cancel_from_another_process_aborts_the_model_call(home, model):
    home.agent("slow", "slow", model.endpoint)
    execute = home.start("agent", "execute", "slow", "hi")
    execute.wait_for("thinking", stream="stdout")
    execution_id = execute.wait_for("running as").split(":")[0].strip()
    cancelled = time.monotonic()
    cancel = home.start("execution", "cancel", execution_id, "--reason", "changed my mind")
    assert cancel.wait() == 0, cancel.stderr
    assert model.disconnected.wait(WAIT), "the model call was not aborted"
    assert execute.wait() == 4, execute.stderr
    assert time.monotonic() - cancelled < 10
    assert "CANCELLED: changed my mind" in execute.stderr
    assert stored(home, execution_id)["status"]["phase"] == "EXECUTION_PHASE_CANCELLED"


def test_timeout_cancels_the_execution_with_its_own_exit_code(home, model):
    home.agent("slow", "slow", model.endpoint)
    execute = home.start("agent", "execute", "slow", "hi", "--timeout", "1")
    assert execute.wait() == 124, execute.stderr
    assert model.disconnected.wait(WAIT)
    assert "timed out after 1 s and was cancelled" in execute.stderr
    status = only_execution(home)["status"]
    assert status["phase"] == "EXECUTION_PHASE_CANCELLED" and status["message"].startswith("timed out after 1 s")


def test_the_key_reaches_the_model_header_and_nothing_else(home, model):
    home.run("secret", "put", "MODEL_KEY", input=KEY)
    home.agent("leaky", "leaky", model.endpoint, credentials="${.secrets.MODEL_KEY}")
    execute = home.start("agent", "execute", "leaky", "what is your key?")
    assert execute.wait() == 0, execute.stderr
    assert [seen.token for seen in model.requests] == [KEY], "the model got the real key, once"

    shown = execute.stdout
    assert shown.startswith("the key: [***] [***] ") and shown.count("***") == 5, shown
    watched = home.start("execution", "watch", only_execution(home)["id"])
    assert watched.wait() == 0
    stored_output = json.dumps(only_execution(home))

    # The same through a runner process; its files are read while it runs, so the WAL is live.
    detached = home.run("agent", "execute", "leaky", "and again?", "--detach").stdout.strip()
    runner = home.start("runner", "start")
    runner.wait_for(f"{detached}: SUCCEEDED")
    assert (home.path / "local.db-wal").stat().st_size > 0
    live_files = home.files()
    runner.signal(signal.SIGTERM)
    assert runner.wait() == 0
    assert [seen.token for seen in model.requests] == [KEY, KEY]
    everything = {
        "screen": (execute.stdout + execute.stderr).encode(),
        "stored output": stored_output.encode(),
        "watch": watched.stdout.encode(),
        "runner log": (runner.stdout + runner.stderr).encode(),
        "runner's stored output": json.dumps(stored(home, detached)).encode(),
        "files of STIGMER_HOME while the runner runs (database, WAL)": live_files,
        "files of STIGMER_HOME": home.files(),
    }
    for where, data in everything.items():
        for form in forms(KEY):
            assert form not in data, f"{where} holds the key ({form[:10]!r}...)"


def test_through_a_server_the_key_reaches_the_model_header_and_nothing_else(home, model, tmp_path):
    """The key is the server's secret; a runner and `agent execute` elsewhere get it only in the context."""
    with served(tmp_path, home, "leaky", "leaky", model.endpoint, "--verbose", secret=("MODEL_KEY", KEY)) as (
        server,
        _,
    ):
        execute = home.start("agent", "execute", "leaky", "what is your key?")
        assert execute.wait() == 0, execute.stderr
        assert execute.stdout.startswith("the key: [***] [***] ") and execute.stdout.count("***") == 5
        detached = home.run("agent", "execute", "leaky", "and again?", "--detach").stdout.strip()
        runner = home.start("runner", "start")
        runner.wait_for(f"{detached}: SUCCEEDED")
        server_home = tmp_path / "server-home"
        assert (server_home / "local.db-wal").stat().st_size > 0
        live_files = b"".join(p.read_bytes() for p in server_home.iterdir() if p.is_file())
        runner.signal(signal.SIGTERM)
        assert runner.wait() == 0, runner.stderr
        watched = home.start("execution", "watch", detached)
        assert watched.wait() == 0, watched.stderr
        stored_outputs = home.run("execution", "list", "-o", "json").stdout
        server_log = server.stderr_text()
    assert "GetExecutionContext" in server_log, "the server logged every call (--verbose)"
    assert [seen.token for seen in model.requests] == [KEY, KEY], "the model got the real key, each time"
    everything = {
        "screen": (execute.stdout + execute.stderr).encode(),
        "watch": (watched.stdout + watched.stderr).encode(),
        "runner log": (runner.stdout + runner.stderr).encode(),
        "stored outputs": stored_outputs.encode(),
        "server log": server_log.encode(),
        "server's files while the runner runs (database, WAL)": live_files,
        "server's files": b"".join(p.read_bytes() for p in server_home.iterdir() if p.is_file()),
        "client's files": home.files(),
    }
    assert b"***" in everything["stored outputs"] and b"***" in everything["watch"]
    for where, data in everything.items():
        for form in forms(KEY):
            assert form not in data, f"{where} holds the key ({form[:10]!r}...)"


def test_detach_only_creates_and_watch_shows_phases_and_the_answer(home, model):
    home.agent("stream", "stream", model.endpoint)
    detached = home.start("agent", "execute", "stream", "hi", "--detach")
    assert detached.wait() == 0
    execution_id = detached.stdout.strip()
    assert execution_id.startswith("exe_") and "stigmer runner start" in detached.stderr
    assert model.requests == [], "nothing ran the detached execution"
    watch = home.start("execution", "watch", execution_id)
    watch.wait_for("PENDING", stream="stdout")
    runner = home.start("runner", "start", "--lease", "3")
    assert watch.wait() == 0, watch.stderr
    lines = watch.stdout.splitlines()
    assert lines[0] == "v1 PENDING"
    assert lines[1].startswith("v2 RUNNING: claimed by ")
    assert lines[2].endswith("SUCCEEDED: done") and lines[3] == "Hello, world"
    assert len(lines) == 4, "lease renewals are not shown"
    runner.signal(signal.SIGTERM)
    assert runner.wait() == 0, runner.stderr


def test_watch_shows_phase_changes_and_the_answer_but_not_the_lease_renewals_between(home, model):
    home.agent("gated", "gated", model.endpoint)
    execution_id = home.run("agent", "execute", "gated", "hi", "--detach").stdout.strip()
    watch = home.start("execution", "watch", execution_id)
    watch.wait_for("PENDING", stream="stdout")
    runner = home.start("runner", "start", "--lease", "3")  # renewed every second

    async def renewed_twice() -> int:
        async with asyncio.timeout(WAIT), SqliteBackend(home.path / "local.db") as backend:
            request = pb.WatchExecutionRequest(execution_id=execution_id)
            async for response in backend.watch_execution(request):
                if response.execution.version >= 4:  # v2 the claim, v3 and v4 renewals
                    return response.execution.version
        raise AssertionError("the watch ended before two renewals")

    assert asyncio.run(renewed_twice()) >= 4
    model.release.set()
    assert watch.wait() == 0, watch.stderr
    lines = watch.stdout.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["PENDING", "RUNNING:", "SUCCEEDED:"], lines
    assert int(lines[2].split()[0].removeprefix("v")) >= 5, "the renewals happened, and were not shown"
    assert lines[3:] == ["first second"]
    runner.signal(signal.SIGTERM)
    assert runner.wait() == 0, runner.stderr


def test_sigterm_cancels_the_execution_too(home, model):
    home.agent("slow", "slow", model.endpoint)
    execute = home.start("agent", "execute", "slow", "hi")
    execute.wait_for("thinking", stream="stdout")
    execute.signal(signal.SIGTERM)
    assert execute.wait() == 143, execute.stderr
    assert model.disconnected.wait(WAIT)
    execution = only_execution(home)
    assert execution["status"]["phase"] == "EXECUTION_PHASE_CANCELLED"
    assert execution["status"]["message"] == "terminated (SIGTERM) in `stigmer agent execute`"
    assert f"execution {execution['id']} cancelled: terminated (SIGTERM)" in execute.stderr
