"""One ``ListExecutions`` page per filter combination, at a small and a large table size.

The rows: every other one belongs to agent ``bench`` (phases in turn, so every filter of it fills a
page of 50 even at 1,000 rows), the rest to agent ``other``, all SUCCEEDED, so ``other`` with phase
PENDING is an empty page: the case that walked an index (352 ms at 1M rows before schema v3).
The small table's time is the baseline of the large one's, same run.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path

from sqlite_throughput import AGENT

from stigmer_backend.backends.rules import paging
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._rows import EXECUTION_COLUMNS
from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["FILTERS", "page_times"]

P = pb.ExecutionPhase
FILTERS: dict[str, tuple[str | None, list[pb.ExecutionPhase]]] = {
    "none": (None, []),
    "agent": ("bench", []),
    "phase": (None, [P.SUCCEEDED]),
    "phases x2": (None, [P.PENDING, P.FAILED]),
    "agent+phase": ("bench", [P.RUNNING]),
    "agent+phase, empty": ("other", [P.PENDING]),
    "agent+phases x2": ("bench", [P.PENDING, P.FAILED]),
}


async def _build(path: Path, rows: int) -> dict[str, str]:
    agents = {}
    async with SqliteBackend(path) as backend:
        for name in ("bench", "other"):
            applied = await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=AGENT.spec))
            agents[name] = applied.agent_instance.id
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO executions ({", ".join(EXECUTION_COLUMNS)})
            SELECT printf('exe_%026d', i), printf('bulk-%d', i),
                CASE WHEN i % 2 = 0 THEN ? ELSE ? END, CASE WHEN i % 2 = 0 THEN 'bench' ELSE 'other' END, 1,
                'task', NULL, 1, 1700000000000000 + i, 1700000000000000 + i,
                CASE WHEN i % 2 = 0 THEN (i / 2) % 5 + 1 ELSE 3 END, '', NULL, NULL, NULL, NULL, NULL, '', NULL,
                NULL, NULL
            FROM n
            """,
            (rows, agents["bench"], agents["other"]),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return agents


async def _median_call(backend: SqliteBackend, request: pb.ListExecutionsRequest, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await backend.list_executions(request)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def page_times(directory: Path, sizes: tuple[int, int], rounds: int, calls: int) -> dict:
    """``{(filter, rows): [median seconds per round]}`` for every filter, plus a middle page unfiltered."""
    results: dict[tuple[str, int], list[float]] = {}
    for rows in sizes:
        path = directory / f"pages-{rows}.db"
        started = time.perf_counter()
        agents = await _build(path, rows)
        print(f"    {rows:>9,} rows inserted in {time.perf_counter() - started:5.1f}s", flush=True)
        requests = {}
        for name, (agent, phases) in FILTERS.items():
            requests[name] = pb.ListExecutionsRequest(
                page_size=50, agent_instance_id=agents[agent] if agent else "", phases=phases
            )
        middle = pb.ListExecutionsRequest(page_size=50)
        middle.page_token = paging.encode_token(middle, f"exe_{rows // 2:026d}")
        requests["none, middle page"] = middle
        async with SqliteBackend(path) as backend:
            for request in requests.values():
                await _median_call(backend, request, calls)  # warm the caches
            for _ in range(rounds):
                for name, request in requests.items():
                    results.setdefault((name, rows), []).append(await _median_call(backend, request, calls))
        path.unlink()
    return results
