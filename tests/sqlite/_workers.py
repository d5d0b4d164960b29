"""Worker processes for the SQLite tests: ``python _workers.py ROLE CONFIG_JSON``.

Each role is run as a separate OS process (never a thread, never a fork of the
test process) on the same database file as the test, so the tests exercise
real cross-process locking, WAL sharing and change detection.

Protocol: a worker prints one JSON object per line on stdout and flushes it.
Synchronisation is by pipes only: a worker that must wait prints
``{"ready": true}`` and blocks reading a line (``go``) from stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import sqlite3
import sys
import time
import traceback
from datetime import timedelta

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

RUNNING = pb.ExecutionPhase.RUNNING
SUCCEEDED = pb.ExecutionPhase.SUCCEEDED


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def wait_for_go() -> None:
    emit({"ready": True})
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


def error_record(op: str, error: GRPCError) -> dict:
    return {"op": op, "status": error.status.name, "message": error.message}


# -- concurrency: claims, blind updates and compare-and-set increments -----------------------


async def hammer(config: dict) -> None:
    name = config["name"]
    claims_won: list[str] = []
    claims_lost: dict[str, str] = {}
    blind_ok: dict[str, int] = {}
    cas_ok: dict[str, int] = {}
    cas_aborted = 0
    unexpected: list[dict] = []
    creates: dict[str, list] = {}  # request_id -> [execution id, created]
    applies: dict[str, list] = {}  # agent name -> [agent id, outcome]
    writes = 0
    async with SqliteBackend(config["db"]) as backend:
        wait_for_go()
        claims = [(eid, 1) for eid in config["cas_claims"]] + [(eid, 0) for eid in config["blind_claims"]]
        for i in range(config["rounds"]):
            # Every worker creates the same execution, and applies the same new agent instance.
            if i < config["create_races"]:
                request = pb.CreateExecutionRequest(
                    request_id=f"race-{i}",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message=f"race {i}"),
                )
                try:
                    created = await backend.create_execution(request)
                    creates[request.request_id] = [created.execution.id, created.created]
                    writes += created.created
                except GRPCError as error:
                    unexpected.append(error_record("create", error))
                agent_name = f"race-agent-{i}"
                try:
                    applied = await backend.apply_agent_instance(
                        pb.ApplyAgentInstanceRequest(
                            name=agent_name,
                            spec=pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3")),
                        )
                    )
                    applies[agent_name] = [applied.agent_instance.id, applied.outcome.name]
                except GRPCError as error:
                    unexpected.append(error_record("apply", error))
            # A claim race: every worker claims the same execution at the same point of its loop.
            if i < len(claims):
                execution_id, expected = claims[i]
                try:
                    await backend.update_execution_status(
                        pb.UpdateExecutionStatusRequest(
                            execution_id=execution_id, phase=RUNNING, runner_id=name, expected_version=expected
                        )
                    )
                    claims_won.append(execution_id)
                    writes += 1
                except GRPCError as error:
                    claims_lost[execution_id] = error.status.name
                    if error.status not in (Status.ABORTED, Status.FAILED_PRECONDITION):
                        unexpected.append(error_record("claim", error))
            # A blind (expected_version 0) update of a shared running execution.
            execution_id = config["blind_updates"][i % len(config["blind_updates"])]
            try:
                await backend.update_execution_status(
                    pb.UpdateExecutionStatusRequest(
                        execution_id=execution_id, phase=RUNNING, runner_id="shared", message=f"{name} {i}"
                    )
                )
                blind_ok[execution_id] = blind_ok.get(execution_id, 0) + 1
                writes += 1
            except GRPCError as error:
                unexpected.append(error_record("blind", error))
            # A read-modify-write increment of a counter kept in the status message.
            execution_id = config["cas_counters"][i % len(config["cas_counters"])]
            while True:
                try:
                    current = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
                    await backend.update_execution_status(
                        pb.UpdateExecutionStatusRequest(
                            execution_id=execution_id,
                            phase=RUNNING,
                            runner_id="shared",
                            expected_version=current.version,
                            message=str(int(current.status.message or "0") + 1),
                        )
                    )
                except GRPCError as error:
                    if error.status == Status.ABORTED:
                        cas_aborted += 1
                        continue
                    unexpected.append(error_record("cas", error))
                    break
                cas_ok[execution_id] = cas_ok.get(execution_id, 0) + 1
                writes += 1
                break
    emit(
        {
            "name": name,
            "claims_won": claims_won,
            "claims_lost": claims_lost,
            "blind_ok": blind_ok,
            "cas_ok": cas_ok,
            "cas_aborted": cas_aborted,
            "creates": creates,
            "applies": applies,
            "writes": writes,
            "unexpected": unexpected,
        }
    )


# -- opening a fresh file at the same moment --------------------------------------------------


async def opener(config: dict) -> None:
    wait_for_go()
    try:
        async with SqliteBackend(config["db"]) as backend:
            info = await backend.get_backend_info(pb.GetBackendInfoRequest())
            emit({"ok": True, "kind": info.backend_kind})
    except GRPCError as error:
        emit({"ok": False, **error_record("open", error)})


# -- kill -9 mid-write: print each committed version, then write the next ---------------------


async def kill_writer(config: dict) -> None:
    filler = "x" * config.get("output_bytes", 65_536)
    async with SqliteBackend(config["db"]) as backend:
        execution = (await backend.get_execution(pb.GetExecutionRequest(execution_id=config["execution_id"]))).execution
        version = execution.version
        i = 0
        while True:
            i += 1
            updated = await backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=config["execution_id"],
                    phase=RUNNING,
                    runner_id=config["runner_id"],
                    expected_version=version,
                    message=f"step {version + 1}",
                    output=pb.ExecutionOutput(text=f"{version + 1}:{filler}"),
                )
            )
            version = updated.execution.version
            emit({"committed": version})  # printed only after the commit returned
            if i % 3 == 0:  # inserts too, so a kill can land in either kind of write
                created = await backend.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=f"{config['request_prefix']}-{i}",
                        agent_instance=pb.AgentInstanceRef(name="helper"),
                        input=pb.ExecutionInput(message=filler),
                    )
                )
                emit({"created": created.execution.request_id})


# -- pagination: insert one execution per 'go' --------------------------------------------------


async def inserter(config: dict) -> None:
    async with SqliteBackend(config["db"]) as backend:
        emit({"ready": True})
        i = 0
        for line in sys.stdin:
            if line.strip() != "go":
                break
            i += 1
            created = await backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id=f"{config['request_prefix']}-{i}",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message=f"inserted {i}"),
                )
            )
            emit({"inserted": created.execution.id})


# -- watch: drive one execution to SUCCEEDED, in lockstep or in a burst ----------------------


async def watch_writer(config: dict) -> None:
    lockstep = config["mode"].startswith("lockstep")
    jitter = random.Random(config.get("seed", 0)) if config["mode"] == "lockstep-jitter" else None
    async with SqliteBackend(config["db"]) as backend:
        wait_for_go()
        execution_id = config["execution_id"]
        steps = [dict(phase=RUNNING, message="claimed")]
        steps += [dict(phase=RUNNING, message=f"progress {n}") for n in range(config["updates"])]
        steps += [dict(phase=SUCCEEDED, message="done", output=pb.ExecutionOutput(text="answer"))]
        for n, step in enumerate(steps):
            if lockstep and n > 0:
                line = sys.stdin.readline()
                if line.strip() != "go":
                    raise SystemExit(f"expected 'go', got {line!r}")
                if jitter is not None:  # write at a random moment relative to the watcher's polling
                    time.sleep(jitter.uniform(0, 0.025))
            response = await backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(execution_id=execution_id, runner_id="watched-runner", **step)
            )
            emit({"version": response.execution.version, "t": time.monotonic()})


# -- faults -----------------------------------------------------------------------------------


async def _seed(backend: SqliteBackend) -> pb.Execution:
    await backend.apply_agent_instance(
        pb.ApplyAgentInstanceRequest(
            name="helper", spec=pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3"))
        )
    )
    created = await backend.create_execution(
        pb.CreateExecutionRequest(
            request_id="seed", agent_instance=pb.AgentInstanceRef(name="helper"), input=pb.ExecutionInput(message="hi")
        )
    )
    claimed = await backend.update_execution_status(
        pb.UpdateExecutionStatusRequest(
            execution_id=created.execution.id,
            phase=RUNNING,
            runner_id="r",
            expected_version=1,
            lease_duration=timedelta(hours=1),
        )
    )
    return claimed.execution


def _raw_state(path: str) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "executions": conn.execute("SELECT count(*) FROM executions").fetchone()[0],
            "history": conn.execute("SELECT count(*) FROM execution_history").fetchone()[0],
            "versions": conn.execute("SELECT group_concat(version) FROM executions").fetchone()[0],
        }
    finally:
        conn.close()


async def _failing_writes(backend: SqliteBackend, execution: pb.Execution, big: str) -> list[dict]:
    """Two writes too big for the space left: an insert and a status update."""
    outcomes = []
    for op, call in [
        (
            "create",
            lambda: backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id="too-big",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message=big),
                )
            ),
        ),
        (
            "update",
            lambda: backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id,
                    phase=RUNNING,
                    runner_id="r",
                    expected_version=execution.version,
                    output=pb.ExecutionOutput(text=big),
                )
            ),
        ),
    ]:
        try:
            await call()
            outcomes.append({"op": op, "status": "OK"})
        except GRPCError as error:
            outcomes.append(error_record(op, error))
    return outcomes


async def full_disk(config: dict) -> None:
    """Run inside a private mount namespace with a small tmpfs mounted at ``config['dir']``."""
    path = os.path.join(config["dir"], "local.db")
    async with SqliteBackend(path) as backend:
        execution = await _seed(backend)
        before = _raw_state(path)
        # Fill the file system to the last byte.
        filler = os.path.join(config["dir"], "filler")
        with open(filler, "wb", buffering=0) as f:
            chunk = b"\0" * 65536
            while True:
                try:
                    f.write(chunk)
                except OSError:
                    break
            while True:
                try:
                    f.write(b"\0")
                except OSError:
                    break
        outcomes = await _failing_writes(backend, execution, "y" * 300_000)
        during = _raw_state(path)
        os.remove(filler)  # room again: the same backend must work and show nothing of the failed writes
        after_get = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution
        recovered = await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id, phase=RUNNING, runner_id="r", expected_version=execution.version
            )
        )
    emit(
        {
            "outcomes": outcomes,
            "before": before,
            "during": during,
            "after": _raw_state(path),
            "version_before": execution.version,
            "version_after_failures": after_get.version,
            "version_recovered": recovered.execution.version,
        }
    )


async def file_size_limit(config: dict) -> None:
    """Writes that cross RLIMIT_FSIZE fail (EFBIG, SIGXFSZ ignored) in the middle of the file."""
    path = config["db"]
    async with SqliteBackend(path) as backend:
        execution = await _seed(backend)
    before = _raw_state(path)
    async with SqliteBackend(path) as backend:
        sizes = [os.path.getsize(path + suffix) for suffix in ("", "-wal") if os.path.exists(path + suffix)]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = max(sizes) + 4096
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        outcomes = await _failing_writes(backend, execution, "y" * 200_000)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        after_get = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution
    emit(
        {
            "outcomes": outcomes,
            "before": before,
            "after": _raw_state(path),
            "version_before": execution.version,
            "version_after_failures": after_get.version,
        }
    )


async def open_and_write(config: dict) -> None:
    """Open the file and try one write; report where it failed (used as another user)."""
    try:
        backend = SqliteBackend(config["db"])
    except GRPCError as error:
        emit({"stage": "open", **error_record("open", error)})
        return
    try:
        await backend.apply_agent_instance(
            pb.ApplyAgentInstanceRequest(
                name="another", spec=pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3"))
            )
        )
        emit({"stage": "write", "status": "OK"})
    except GRPCError as error:
        emit({"stage": "write", **error_record("apply", error)})
    finally:
        await backend.aclose()


ROLES = {
    "hammer": hammer,
    "opener": opener,
    "kill_writer": kill_writer,
    "inserter": inserter,
    "watch_writer": watch_writer,
    "full_disk": full_disk,
    "file_size_limit": file_size_limit,
    "open_and_write": open_and_write,
}


def main() -> None:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    try:
        asyncio.run(ROLES[role](config))
    except Exception:
        emit({"crash": traceback.format_exc()})
        raise


if __name__ == "__main__":
    main()
