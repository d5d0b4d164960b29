"""SQLite backend throughput and page cost, next to raw ``sqlite3``.

    .venv/bin/python benchmarks/sqlite_throughput.py            # full run (1,000,000-row table: ~1 min)
    .venv/bin/python benchmarks/sqlite_throughput.py --quick    # smaller, for a smoke run

Prints medians over several rounds, all measured in this one run:

(a) Executions per second created and driven PENDING -> RUNNING -> SUCCEEDED in-process through
    ``SqliteBackend`` (three RPCs: CreateExecution, a claim with expected_version, SUCCEEDED with an
    output), next to raw ``sqlite3`` doing the equivalent writes on the same schema (tables, indexes,
    history trigger, created by opening a ``SqliteBackend`` on the raw file once) with the same
    pragmas (WAL, synchronous=NORMAL, foreign_keys=ON), one ``BEGIN IMMEDIATE`` transaction per
    write: the request-id and agent lookups and the INSERT of all columns for a create; one
    compare-and-set ``UPDATE ... WHERE id = ? AND version = ?`` of the same columns per status
    write. Goal: the backend reaches at least one third of raw.

(b) The time of one ``ListExecutions`` page of 50 (the first page, and a page in the middle of the
    table reached with its page token) with 1,000 and with 1,000,000 executions in the table.
    Goal: 1,000,000 rows cost at most 1.5 times 1,000 rows. The rows are inserted with one SQL
    statement in one transaction (history trigger included), not through RPCs; the middle page
    token is made with the backend's own token encoder from the key of the row before it, which is
    what a client paging there would hold.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stigmer_backend.backends.rules import ids, paging
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._rows import EXECUTION_COLUMNS
from stigmer_backend.backends.sqlite._schema import STATUS_COLUMN_NAMES
from stigmer_backend.gen.stigmer.backend import v1 as pb

AGENT = pb.ApplyAgentInstanceRequest(
    name="bench", spec=pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3"))
)
RUNNER = "bench-runner"
LEASE_US = 60 * 1_000_000


# -- (a) create + claim + succeed ----------------------------------------------------------------


async def backend_round(backend: SqliteBackend, tag: str, count: int) -> float:
    """Seconds to create and drive ``count`` executions through the backend."""
    agent = pb.AgentInstanceRef(name="bench")
    started = time.perf_counter()
    for i in range(count):
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id=f"{tag}-{i}", agent_instance=agent, input=pb.ExecutionInput(message=f"task {i}")
            )
        )
        execution_id = created.execution.id
        await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution_id, phase=pb.ExecutionPhase.RUNNING, runner_id=RUNNER, expected_version=1
            )
        )
        await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution_id,
                phase=pb.ExecutionPhase.SUCCEEDED,
                runner_id=RUNNER,
                expected_version=2,
                output=pb.ExecutionOutput(text="answer"),
            )
        )
    return time.perf_counter() - started


_INSERT = f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}) VALUES ({', '.join('?' * len(EXECUTION_COLUMNS))})"
_UPDATE = (
    f"UPDATE executions SET version = ?, update_us = ?, {', '.join(f'{c} = ?' for c in STATUS_COLUMN_NAMES)} "
    "WHERE id = ? AND version = ?"
)


class RawWriter:
    """The same writes with plain ``sqlite3``: the floor any Python implementation pays."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        assert self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA busy_timeout = 30000")
        self.last_id: str | None = self.conn.execute("SELECT max(id) FROM executions").fetchone()[0]

    def create(self, request_id: str, message: str) -> str:
        conn = self.conn
        execution_id = ids.next_id(ids.EXECUTION_PREFIX, self.last_id)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT id FROM executions WHERE request_id = ?", (request_id,)).fetchone():
                raise RuntimeError("request id reused")
            agent_id, version = conn.execute(
                "SELECT id, version FROM agent_instances WHERE name = ?", ("bench",)
            ).fetchone()
            now = time.time_ns() // 1000
            # id, request_id, agent_instance_id, agent_instance_name, agent_version, input_message,
            # input_data, version, create_us, update_us, then the status columns of a new execution
            row = (execution_id, request_id, agent_id, "bench", version, message, None, 1, now, now)
            conn.execute(_INSERT, (*row, 1, "", None, None, None, None, None, "", None, None, None))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.last_id = execution_id
        return execution_id

    def status(self, execution_id: str, version: int, status: tuple) -> None:
        """A compare-and-set write of every status column (the order of ``STATUS_COLUMN_NAMES``)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time_ns() // 1000
            cursor = conn.execute(_UPDATE, (version + 1, now, *status, execution_id, version))
            if cursor.rowcount != 1:
                raise RuntimeError("compare-and-set failed")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def run(self, tag: str, count: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            execution_id = self.create(f"{tag}-{i}", f"task {i}")
            now = time.time_ns() // 1000
            # phase, message, output_text, output_data, error_code, error_message, error_details,
            # runner_id, lease_expire_us, start_us, end_us
            self.status(execution_id, 1, (2, "", None, None, None, None, None, RUNNER, now + LEASE_US, now, None))
            self.status(execution_id, 2, (3, "", "answer", None, None, None, None, RUNNER, None, now, now))
        return time.perf_counter() - started


async def throughput(directory: Path, count: int, rounds: int) -> tuple[float, float, float]:
    """Medians: backend executions/s, raw executions/s, and the per-round backend/raw ratio."""
    backend_rates, raw_rates = await throughput_rounds(directory, count, rounds)
    ratios = [b / r for b, r in zip(backend_rates, raw_rates, strict=True)]
    return statistics.median(backend_rates), statistics.median(raw_rates), statistics.median(ratios)


async def throughput_rounds(directory: Path, count: int, rounds: int) -> tuple[list[float], list[float]]:
    """Executions/s of each round, backend and raw sqlite3, interleaved."""
    backend_path, raw_path = directory / "backend.db", directory / "raw.db"
    async with SqliteBackend(raw_path) as backend:  # the schema and agent instance for raw sqlite3
        await backend.apply_agent_instance(AGENT)
    raw = RawWriter(raw_path)
    backend_rates, raw_rates = [], []
    async with SqliteBackend(backend_path) as backend:
        await backend.apply_agent_instance(AGENT)
        await backend_round(backend, "warmup", count // 5)
        raw.run("warmup", count // 5)
        for r in range(rounds):  # interleaved, so drift (thermal, other load) hits both alike
            backend_rates.append(count / await backend_round(backend, f"round{r}", count))
            raw_rates.append(count / raw.run(f"round{r}", count))
            print(
                f"    round {r + 1}: backend {backend_rates[-1]:8.0f}/s   raw sqlite3 {raw_rates[-1]:8.0f}/s",
                flush=True,
            )
    raw.conn.close()
    return backend_rates, raw_rates


# -- (b) one page at 1,000 and 1,000,000 rows ------------------------------------------------------


def bulk_insert(path: Path, count: int) -> None:
    """``count`` finished executions in one statement and one transaction (the trigger fills history).

    Identifiers are ``exe_`` and 26 digits: valid identifier characters, in creation order.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB, for the load only
        agent_id, agent_name, version = conn.execute("SELECT id, name, version FROM agent_instances").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO executions ({", ".join(EXECUTION_COLUMNS)})
            SELECT printf('exe_%026d', i), printf('bulk-%d', i), ?, ?, ?, 'task ' || i, NULL, 3,
                1700000000000000 + i, 1700000000000000 + i,
                3, 'done', 'answer ' || i, NULL, NULL, NULL, NULL, 'bulk-runner', NULL,
                1700000000000000 + i, 1700000000000000 + i
            FROM n
            """,
            (count, agent_id, agent_name, version),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def time_page(backend: SqliteBackend, request: pb.ListExecutionsRequest, calls: int) -> float:
    """Median seconds of one ListExecutions call, over ``calls`` calls."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = await backend.list_executions(request)
        times.append(time.perf_counter() - started)
    assert len(response.executions) == 50 and response.next_page_token
    return statistics.median(times)


def time_sql(conn: sqlite3.Connection, sql: str, params: tuple, calls: int) -> float:
    """Median seconds of the page query alone, in raw sqlite3 (rows fetched, nothing converted)."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - started)
    assert len(rows) == 51
    return statistics.median(times)


async def page_costs(directory: Path, sizes: tuple[int, int], rounds: int, calls: int) -> dict:
    results: dict[tuple[int, str], list[float]] = {}
    select = f"SELECT {', '.join(EXECUTION_COLUMNS)} FROM executions"
    for rows in sizes:
        path = directory / f"list-{rows}.db"
        async with SqliteBackend(path) as backend:
            await backend.apply_agent_instance(AGENT)
        started = time.perf_counter()
        bulk_insert(path, rows)
        size_mb = path.stat().st_size / 1e6
        print(f"    {rows:>9,} rows inserted in {time.perf_counter() - started:5.1f}s ({size_mb:,.0f} MB)", flush=True)
        first = pb.ListExecutionsRequest(page_size=50)
        middle = pb.ListExecutionsRequest(page_size=50)
        middle_key = f"exe_{rows // 2:026d}"
        middle.page_token = paging.encode_token(middle, middle_key)
        raw = sqlite3.connect(path)
        async with SqliteBackend(path) as backend:
            await time_page(backend, first, calls)  # warm the caches
            await time_page(backend, middle, calls)
            for _ in range(rounds):
                results.setdefault((rows, "first"), []).append(await time_page(backend, first, calls))
                results.setdefault((rows, "middle"), []).append(await time_page(backend, middle, calls))
                results.setdefault((rows, "sql-first"), []).append(
                    time_sql(raw, f"{select} ORDER BY id LIMIT ?", (51,), calls)
                )
                results.setdefault((rows, "sql-middle"), []).append(
                    time_sql(raw, f"{select} WHERE id > ? ORDER BY id LIMIT ?", (middle_key, 51), calls)
                )
        raw.close()
    return {key: statistics.median(values) for key, values in results.items()}


# -- main ---------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer executions, 100,000 instead of 1,000,000 rows")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (default 5)")
    parser.add_argument("--dir", type=Path, help="where to put the database files (default: a temporary directory)")
    args = parser.parse_args()
    count = 300 if args.quick else 1000
    sizes = (1_000, 100_000 if args.quick else 1_000_000)
    calls = 100 if args.quick else 300

    print(
        f"stigmer SQLite backend benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {args.rounds} rounds{' (--quick)' if args.quick else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="stigmer-bench-", dir=args.dir) as tmp:
        directory = Path(tmp)
        print(f"\n(a) executions created and driven PENDING -> RUNNING -> SUCCEEDED, {count} per round")
        backend_rate, raw_rate, round_ratio = await throughput(directory, count, args.rounds)
        ratio = backend_rate / raw_rate
        print(
            f"  median: SqliteBackend {backend_rate:,.0f} executions/s, raw sqlite3 {raw_rate:,.0f} executions/s, "
            f"backend/raw = {ratio:.2f} (median of the per-round ratios {round_ratio:.2f}; "
            f"goal >= 0.33: {'met' if min(ratio, round_ratio) >= 1 / 3 else 'MISSED'})"
        )

        small, large = sizes
        print(f"\n(b) one ListExecutions page of 50, {small:,} vs {large:,} rows (median of {calls} calls per round)")
        costs = await page_costs(directory, sizes, args.rounds, calls)
        for page in ("first", "middle"):
            a, b = costs[small, page], costs[large, page]
            sa, sb = costs[small, f"sql-{page}"], costs[large, f"sql-{page}"]
            print(
                f"  {page:>6} page: {a * 1e6:7.0f} us at {small:,} rows, {b * 1e6:7.0f} us at {large:,} rows, "
                f"ratio {b / a:.2f} (goal <= 1.5: {'met' if b / a <= 1.5 else 'MISSED'}); "
                f"the SQL alone: {sa * 1e6:.0f} us vs {sb * 1e6:.0f} us, ratio {sb / sa:.2f}"
            )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
