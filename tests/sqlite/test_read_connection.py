"""Reads do not queue behind a write that waits for another process's lock (``_read_connection``).

Another process (the CLI, a runner) holds the write lock with ``BEGIN IMMEDIATE``;
a write sent to the backend meanwhile waits for it on the storage thread. Reads
sent after it answer at once on the read-only connection, see every write that
was acknowledged before they were sent, and leave what needs a write to the
thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stigmer_backend.backends.encryption import MasterKeySource
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import AGENT, apply_request, create_request
from tests.conftest import REPO, toolchain_env
from tests.sqlite_lock import write_lock_held

from .reads_aside import REPORT

RUNNER = "runner-1"


async def _until_queued(backend: SqliteBackend, count: int) -> None:
    """Until ``count`` calls wait on the storage thread (each gets there in its first step)."""
    for _ in range(100):
        if backend._storage.queued == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{backend._storage.queued} calls on the storage thread, expected {count}")


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path))


def _claim(execution_id: str, version: int, lease: timedelta = timedelta(hours=1)) -> pb.UpdateExecutionStatusRequest:
    return pb.UpdateExecutionStatusRequest(
        execution_id=execution_id,
        phase=pb.ExecutionPhase.RUNNING,
        runner_id=RUNNER,
        expected_version=version,
        lease_duration=lease,
    )


def _progress(execution_id: str, version: int, message: str) -> pb.UpdateExecutionStatusRequest:
    return pb.UpdateExecutionStatusRequest(
        execution_id=execution_id,
        phase=pb.ExecutionPhase.RUNNING,
        runner_id=RUNNER,
        expected_version=version,
        message=message,
    )


async def test_every_read_rpc_answers_on_the_read_connection_while_a_write_waits(db_path: Path, tmp_path: Path) -> None:
    key = MasterKeySource(tmp_path, environ={}, keychain=None)
    spec = pb.AgentInstanceSpec(
        instructions="be brief",
        model=pb.ModelConfig(provider="ollama", model="llama3", credentials="${.secrets.API_KEY}"),
    )
    async with SqliteBackend(db_path, master_key=key) as backend:
        await backend.apply_agent_instance(apply_request(spec=spec))
        await backend.put_secret(pb.PutSecretRequest(name="API_KEY", value="read-aside-value"))
        execution = (await backend.create_execution(create_request("r-1"))).execution
        await backend.update_execution_status(_claim(execution.id, 1))
        assert _open_files(db_path) == 1  # the read connection is opened at its first use only

        with write_lock_held(db_path):
            write = asyncio.ensure_future(backend.create_execution(create_request("r-2")))
            await _until_queued(backend, 1)
            answered = backend._reads.answers

            got = await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))
            listed = await backend.list_executions(pb.ListExecutionsRequest())
            agent = await backend.get_agent_instance(
                pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=AGENT))
            )
            agents = await backend.list_agent_instances(pb.ListAgentInstancesRequest())
            secrets = await backend.list_secrets(pb.ListSecretsRequest())
            context = await backend.get_execution_context(
                pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=RUNNER)
            )
            assert _open_files(db_path) == 2  # the one connection and the read connection
            watch = backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution.id))
            watched = await anext(watch)
            await watch.aclose()

            assert backend._reads.answers == answered + 7  # six RPCs and the watch's first read
            assert not write.done(), "the write should still be waiting for the lock"
            assert backend._storage.queued == 1  # nothing queued behind it

        assert (got.execution.version, watched.execution.version) == (2, 2)
        assert [e.id for e in listed.executions] == [execution.id]
        assert agent.agent_instance.name == AGENT and [a.name for a in agents.agent_instances] == [AGENT]
        assert [s.name for s in secrets.secrets] == ["API_KEY"]
        assert context.secrets == {"API_KEY": "read-aside-value"}
        created = await write  # the held-up write succeeds once the lock is free
        assert created.created
        listed = await backend.list_executions(pb.ListExecutionsRequest())
        assert [e.id for e in listed.executions] == [execution.id, created.execution.id]
    assert _open_files(db_path) == 0  # closing the backend closed both connections


async def test_a_read_on_the_read_connection_sees_every_acknowledged_write(db_path: Path) -> None:
    """Its snapshot starts with the read: nothing it read before makes it stale."""
    async with SqliteBackend(db_path) as backend, SqliteBackend(db_path) as other_writer:
        await backend.apply_agent_instance(apply_request())
        execution = (await backend.create_execution(create_request("r-1"))).execution
        get = pb.GetExecutionRequest(execution_id=execution.id)

        with write_lock_held(db_path):
            claim = asyncio.ensure_future(backend.update_execution_status(_claim(execution.id, 1)))
            await _until_queued(backend, 1)
            answered = backend._reads.answers
            before_claim = await backend.get_execution(get)
            assert not claim.done() and backend._reads.answers == answered + 1
        # Not acknowledged while the read ran, so it could be ordered before the claim.
        assert before_claim.execution.version == 1
        assert (await claim).execution.version == 2  # acknowledged here
        await other_writer.update_execution_status(_progress(execution.id, 2, "from another connection"))

        with write_lock_held(db_path):
            waiting = asyncio.ensure_future(backend.update_execution_status(_progress(execution.id, 3, "waiting")))
            await _until_queued(backend, 1)
            answered = backend._reads.answers
            seen = await backend.get_execution(get)
            listed = await backend.list_executions(pb.ListExecutionsRequest())
            assert not waiting.done() and backend._reads.answers == answered + 2
        for read in (seen.execution, listed.executions[0]):
            assert (read.version, read.status.message) == (3, "from another connection")
        assert (await waiting).execution.version == 4
        assert (await backend.get_execution(get)).execution.version == 4


async def test_a_read_that_must_record_a_lease_expiry_runs_on_the_storage_thread(db_path: Path) -> None:
    """The read connection refuses writes (``query_only``): the call is run again where it can write."""
    async with SqliteBackend(db_path) as backend:
        await backend.apply_agent_instance(apply_request())
        execution = (await backend.create_execution(create_request("r-1"))).execution
        claimed = await backend.update_execution_status(_claim(execution.id, 1, lease=timedelta(seconds=1)))
        lease_end = claimed.execution.status.lease_expire_time
        while datetime.now(UTC) <= lease_end:  # the shortest lease the contract allows: 1 s
            await asyncio.sleep(0.05)

        with write_lock_held(db_path):
            write = asyncio.ensure_future(backend.create_execution(create_request("r-2")))
            await _until_queued(backend, 1)
            answered = backend._reads.answers
            get = asyncio.ensure_future(backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id)))
            await _until_queued(backend, 2)  # tried on the read connection, then queued behind the write
            assert backend._reads.answers == answered
            assert not get.done()
        expired = (await get).execution
        assert (expired.version, expired.status.phase) == (3, pb.ExecutionPhase.FAILED)
        assert (await write).created
        assert (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution == expired


def test_the_conformance_suite_passes_with_every_read_on_the_read_connection(tmp_path: Path) -> None:
    """Each read of the suite (hundreds, many right after the write they check) on the read connection."""
    env = toolchain_env()
    env["PYTHONPATH"] = str(REPO)  # so tests.sqlite.reads_aside imports as module:factory
    env[REPORT] = str(tmp_path / "answers")
    summary = tmp_path / "summary.json"
    stigmer = str(Path(sys.executable).parent / "stigmer")
    target = "tests.sqlite.reads_aside:factory"
    result = subprocess.run(
        [stigmer, "conformance", "run", "--target", target, "--json-report", str(summary)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads(summary.read_text())
    assert report["conformant"] and report["totals"]["passed"] >= 150
    assert int((tmp_path / "answers").read_text()) >= 300  # reads answered there, not on the one connection
