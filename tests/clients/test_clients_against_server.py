"""The Go and TypeScript example clients walk one execution through a real ``stigmer server``.

Each client stores a secret, applies an agent instance that references it,
creates an execution, watches it, claims it as a runner, fetches its context,
completes it and follows the watch to its end, printing one line per step.
The tests compare that path line by line and check the server's SQLite file.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from stigmer_backend.backends.rules import CONTRACT_VERSION
from stigmer_backend.server.launch import ServerProcess
from tests.certificates import make_tls_files
from tests.remote_fixtures import count_rows

CLIENTS = {
    # fixture name: (agent instance, secret, runner, input message) the client uses
    "go_client": ("go-client-demo", "GO_CLIENT_KEY", "go-client-runner", "hello from Go"),
    "ts_client": ("ts-client-demo", "TS_CLIENT_KEY", "ts-client-runner", "hello from TypeScript"),
}


def expected_path(agent: str, secret: str, runner: str, message: str) -> list[str]:
    return [
        f"backend: sqlite, contract {CONTRACT_VERSION}, capabilities "
        "[CAPABILITY_DURABLE_STORAGE CAPABILITY_SECRETS CAPABILITY_AUTHENTICATION]",
        f"secret: {secret} stored (created true)",
        f"agent: {agent} APPLY_OUTCOME_CREATED",
        "execution: created true, v1 EXECUTION_PHASE_PENDING",
        "watch: v1 EXECUTION_PHASE_PENDING",
        f"claim: v2 EXECUTION_PHASE_RUNNING by {runner}",
        f'context: agent {agent}, input "{message}", API_KEY resolved true, secrets given 1',
        f'complete: v3 EXECUTION_PHASE_SUCCEEDED, output "echo: {message}"',
        "watch: v2 EXECUTION_PHASE_RUNNING",
        "watch: v3 EXECUTION_PHASE_SUCCEEDED",
        "watch: ended",
    ]


@pytest.fixture(params=sorted(CLIENTS))
def client(request) -> tuple[list[str], tuple[str, str, str, str]]:
    return request.getfixturevalue(request.param), CLIENTS[request.param]


def run_client(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


def test_the_client_walks_an_execution_over_plaintext(client, served, token_file, db_path):
    command, names = client
    result = run_client(command, "--endpoint", served.endpoint, "--token-file", str(token_file), "--plaintext")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_path(*names)
    assert count_rows(db_path, "executions") == 1
    assert count_rows(db_path, "secrets") == 1


def test_the_client_walks_an_execution_over_tls(client, tmp_path, db_path, token_file, server_env):
    command, names = client
    tls = make_tls_files(tmp_path)
    args = [
        "--db",
        str(db_path),
        "--token-file",
        str(token_file),
        "--tls-cert",
        str(tls.cert),
        "--tls-key",
        str(tls.key),
    ]
    with ServerProcess.start(args, env=server_env) as server:
        options = ["--endpoint", server.endpoint, "--token-file", str(token_file), "--ca", str(tls.ca)]
        result = run_client(command, *options)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_path(*names)


def test_the_client_fails_with_the_status_on_a_wrong_token(client, served, tmp_path, db_path):
    command, _ = client
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    result = run_client(command, "--endpoint", served.endpoint, "--token-file", str(wrong), "--plaintext")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "unauthenticated" in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1
    assert count_rows(db_path, "agent_instances") == 0


def test_a_reader_that_stops_early_ends_the_client_quietly(client, served, token_file):
    # `client ... | head -n 1`: the pipe closes after the first line, while the client still has ten to print.
    command, names = client
    options = ["--endpoint", served.endpoint, "--token-file", str(token_file), "--plaintext"]
    with subprocess.Popen([*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()
        errors = process.stderr.read()
        returncode = process.wait(timeout=120)
    assert first.rstrip("\n") == expected_path(*names)[0]
    assert returncode in (0, -signal.SIGPIPE)  # Go leaves by SIGPIPE, as C tools do
    assert errors == ""
