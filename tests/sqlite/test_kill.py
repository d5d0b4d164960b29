"""kill -9 of a writer in the middle of its writes: the database stays consistent and committed."""

from __future__ import annotations

import json
import os
import signal
import time

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import raw, read_message, seed, start_worker

# Each round kills a fresh writer after it printed ``after`` committed versions, plus ``delay``
# seconds of busy-waiting: a write takes about a millisecond, so the kills land at different points
# of the next write (validation, the transaction, appending to the WAL, the commit, the print).
KILLS = [(12, 0.0), (15, 0.0002), (18, 0.0005), (21, 0.0009), (24, 0.0014), (27, 0.002), (30, 0.003)]


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_a_writer_killed_mid_run_leaves_a_consistent_database_at_its_last_commit(db_path, capsys):
    [execution] = await seed(db_path, executions=1)
    async with SqliteBackend(db_path) as backend:
        await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="writer", expected_version=1
            )
        )
    outcomes = []
    for round_number, (kill_after, delay) in enumerate(KILLS):
        worker = start_worker(
            "kill_writer",
            {
                "db": str(db_path),
                "execution_id": execution.id,
                "runner_id": "writer",
                "request_prefix": f"round{round_number}",
            },
        )
        committed: list[int] = []
        created: list[str] = []
        try:
            # Every line is printed after its write committed; the writer goes straight on to the next.
            while len(committed) < kill_after:
                message = read_message(worker)
                committed.extend([message["committed"]] if "committed" in message else [])
                created.extend([message["created"]] if "created" in message else [])
            spin(delay)
            os.kill(worker.pid, signal.SIGKILL)
            # Whatever the writer printed before it died is still in the pipe.
            for line in worker.stdout:
                message = json.loads(line)
                committed.extend([message["committed"]] if "committed" in message else [])
                created.extend([message["created"]] if "created" in message else [])
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            worker.stdout.close()
            worker.stdin.close()
            worker.stderr.close()
        assert worker.returncode == -signal.SIGKILL
        assert committed == list(range(committed[0], committed[-1] + 1))  # the writer really was writing
        last = committed[-1]

        # A plain connection first: the file is sound, whatever the kill interrupted.
        with raw(db_path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            row = conn.execute(
                "SELECT version, phase, message, output_text FROM executions WHERE id = ?", (execution.id,)
            ).fetchone()
            history = [
                r[0]
                for r in conn.execute(
                    "SELECT version FROM execution_history WHERE execution_id = ? ORDER BY version", (execution.id,)
                )
            ]
            stored_requests = {r[0] for r in conn.execute("SELECT request_id FROM executions")}
        # The last committed state: the last printed version, or the one write in flight when killed
        # (committed but not yet printed). Never an older version, never a half-written one.
        assert row["version"] in (last, last + 1), (row["version"], last)
        outcomes.append(row["version"] - last)
        assert row["phase"] == pb.ExecutionPhase.RUNNING
        assert row["message"] == f"step {row['version']}"
        assert row["output_text"].startswith(f"{row['version']}:")
        assert history == list(range(1, row["version"] + 1))
        assert set(created) <= stored_requests

        # And the backend carries on from there.
        async with SqliteBackend(db_path) as backend:
            current = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution.id))).execution
            assert current.version == row["version"]
            updated = await backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id,
                    phase=pb.ExecutionPhase.RUNNING,
                    runner_id="writer",
                    expected_version=current.version,
                    message=f"step {current.version + 1}",
                    output=pb.ExecutionOutput(text=f"{current.version + 1}:after the kill"),
                )
            )
            assert updated.execution.version == current.version + 1
    with capsys.disabled():
        print(
            f"\n[sqlite kill -9] {len(KILLS)} writers killed: {outcomes.count(1)} with a commit not yet printed, "
            f"{outcomes.count(0)} at the last printed commit; integrity_check ok every time"
        )
