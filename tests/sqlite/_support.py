"""Helpers for the SQLite backend tests: real files, real separate processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

WORKERS = Path(__file__).with_name("_workers.py")


def agent_request(name: str = "helper") -> pb.ApplyAgentInstanceRequest:
    return pb.ApplyAgentInstanceRequest(
        name=name, spec=pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3"))
    )


async def seed(path: Path, executions: int = 0, prefix: str = "seed") -> list[pb.Execution]:
    """The agent instance ``helper`` and ``executions`` PENDING executions of it."""
    created = []
    async with SqliteBackend(path) as backend:
        await backend.apply_agent_instance(agent_request())
        for i in range(executions):
            response = await backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id=f"{prefix}-{i}",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message=f"task {i}"),
                )
            )
            created.append(response.execution)
    return created


def statements(backend: SqliteBackend) -> list[str]:
    """The SQL the backend's connection runs from now on (a trigger's statements repeat the one that fired it)."""
    seen: list[str] = []
    assert backend._conn is not None
    backend._conn.set_trace_callback(seen.append)
    return seen


def start_worker(role: str, config: dict, **popen) -> subprocess.Popen[str]:
    """``_workers.py ROLE CONFIG`` in a new interpreter, with line-based pipes."""
    return subprocess.Popen(
        [sys.executable, str(WORKERS), role, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        **popen,
    )


def read_message(proc: subprocess.Popen[str]) -> dict:
    """The next JSON line of a worker; fails the test with its stderr if it died instead."""
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        pytest.fail(f"worker exited ({proc.returncode}) without output; stderr:\n{proc.stderr.read()}")
    message = json.loads(line)
    if "crash" in message:
        pytest.fail(f"worker crashed:\n{message['crash']}")
    return message


def send(proc: subprocess.Popen[str], line: str = "go") -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Waits for a worker to exit normally; returns its stderr."""
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"worker did not finish in {timeout}s; stderr:\n{stderr}")
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{stderr}"
    assert "Traceback" not in stderr, stderr
    return stderr


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, for checks independent of the backend."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def file_bytes(path: Path) -> dict[str, bytes]:
    """The database file and its -wal / -shm companions, by name, if they exist."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))}


IS_ROOT = os.geteuid() == 0
