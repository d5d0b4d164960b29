"""Separate processes writing one database: no lost update, no "database is locked", one winner per claim."""

from __future__ import annotations

import time
from collections import Counter

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import finish, raw, read_message, seed, send, start_worker

WORKERS = 4
ROUNDS = 400  # per worker: ROUNDS blind updates + ROUNDS compare-and-set increments + the claims
CAS_CLAIMS = 25
BLIND_CLAIMS = 15
SHARED = 3  # executions every worker updates blindly, and as many counters
CREATE_RACES = 20  # request ids every worker creates, and new agent names every worker applies


async def test_processes_share_executions_without_lost_updates_or_lock_errors(db_path, capsys):
    executions = await seed(db_path, executions=CAS_CLAIMS + BLIND_CLAIMS + 2 * SHARED)
    ids = [e.id for e in executions]
    cas_claims = ids[:CAS_CLAIMS]
    blind_claims = ids[CAS_CLAIMS : CAS_CLAIMS + BLIND_CLAIMS]
    blind_updates = ids[CAS_CLAIMS + BLIND_CLAIMS : CAS_CLAIMS + BLIND_CLAIMS + SHARED]
    counters = ids[CAS_CLAIMS + BLIND_CLAIMS + SHARED :]
    async with SqliteBackend(db_path) as backend:  # the shared executions run under one runner id
        for execution_id in blind_updates + counters:
            await backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution_id, phase=pb.ExecutionPhase.RUNNING, runner_id="shared", expected_version=1
                )
            )

    config = {
        "db": str(db_path),
        "rounds": ROUNDS,
        "cas_claims": cas_claims,
        "blind_claims": blind_claims,
        "blind_updates": blind_updates,
        "cas_counters": counters,
        "create_races": CREATE_RACES,
    }
    workers = [start_worker("hammer", {**config, "name": f"runner-{n}"}) for n in range(WORKERS)]
    try:
        for worker in workers:  # every worker has opened the database...
            assert read_message(worker) == {"ready": True}
        started = time.monotonic()
        for worker in workers:  # ...before any starts writing
            send(worker)
        results = [read_message(worker) for worker in workers]
        elapsed = time.monotonic() - started
        for worker in workers:
            finish(worker)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    # Nothing surfaced but the documented outcomes of races: no UNAVAILABLE ("database is locked").
    assert [r["unexpected"] for r in results] == [[]] * WORKERS

    with raw(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {row["id"]: row for row in conn.execute("SELECT id, version, phase, runner_id, message FROM executions")}
        history = {
            execution_id: [
                row[0]
                for row in conn.execute(
                    "SELECT version FROM execution_history WHERE execution_id = ? ORDER BY version", (execution_id,)
                )
            ]
            for execution_id in rows
        }

    # Claims: exactly one winner each; with expected_version every loser is ABORTED, without it
    # FAILED_PRECONDITION (held by another runner). The stored runner is the winner.
    for claims, loser_status in ((cas_claims, "ABORTED"), (blind_claims, "FAILED_PRECONDITION")):
        for execution_id in claims:
            winners = [r["name"] for r in results if execution_id in r["claims_won"]]
            losers = Counter(r["claims_lost"][execution_id] for r in results if execution_id in r["claims_lost"])
            assert len(winners) == 1, (execution_id, winners)
            assert losers == {loser_status: WORKERS - 1}, (execution_id, losers)
            row = rows[execution_id]
            assert (row["version"], row["phase"], row["runner_id"]) == (2, pb.ExecutionPhase.RUNNING, winners[0])

    # Blind updates: every successful write is one version, none lost (claimed at version 2).
    def attempts(k: int) -> int:  # round i of every worker writes shared execution i % SHARED
        return WORKERS * len(range(k, ROUNDS, SHARED))

    for k, execution_id in enumerate(blind_updates):
        successes = sum(r["blind_ok"].get(execution_id, 0) for r in results)
        assert successes == attempts(k)
        assert rows[execution_id]["version"] == 2 + successes

    # Read-modify-write increments with compare-and-set: the counter equals the successful writes.
    for k, execution_id in enumerate(counters):
        successes = sum(r["cas_ok"].get(execution_id, 0) for r in results)
        assert successes == attempts(k)
        assert int(rows[execution_id]["message"]) == successes
        assert rows[execution_id]["version"] == 2 + successes

    # One request id, one execution: exactly one worker created it, every worker got it back.
    # One new name, one agent instance: exactly one worker created it, the others found it unchanged.
    for i in range(CREATE_RACES):
        outcomes = [r["creates"][f"race-{i}"] for r in results]
        assert len({execution_id for execution_id, _ in outcomes}) == 1, outcomes
        assert sorted(created for _, created in outcomes) == [False] * (WORKERS - 1) + [True], outcomes
        applied = [r["applies"][f"race-agent-{i}"] for r in results]
        assert len({agent_id for agent_id, _ in applied}) == 1, applied
        assert sorted(outcome for _, outcome in applied) == ["CREATED"] + ["UNCHANGED"] * (WORKERS - 1), applied
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM executions WHERE request_id LIKE 'race-%'").fetchone()[0] == (
            CREATE_RACES
        )
        assert conn.execute("SELECT count(*) FROM agent_instances WHERE name LIKE 'race-agent-%'").fetchone()[0] == (
            CREATE_RACES
        )

    # Every version of every execution is in the history, consecutively.
    for execution_id, row in rows.items():
        assert history[execution_id] == list(range(1, row["version"] + 1)), execution_id

    writes = sum(r["writes"] for r in results)
    aborted = sum(r["cas_aborted"] for r in results)
    with capsys.disabled():
        print(
            f"\n[sqlite concurrency] {WORKERS} processes: {writes} committed writes in {elapsed:.2f}s "
            f"({writes / elapsed:.0f}/s), {aborted} compare-and-set retries, 0 lock errors"
        )
    assert aborted > 0  # the increments really raced
