"""Every ``ListExecutions`` filter combination is one index range per phase, at any table size.

Two checks of the SQL the backend runs: ``EXPLAIN QUERY PLAN`` reads ``executions`` only through
an index constrained by every filter of the request (never a scan of the table, never walking an
index for a filter it does not cover), and the SQLite virtual-machine steps of a page do not grow
when the table grows tenfold under it (an agent with no execution in the asked phase used to read
every row of that phase).
"""

from __future__ import annotations

import itertools
import re
import sqlite3

import pytest

from stigmer_backend.backends.rules import paging
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._list_query import page_query
from stigmer_backend.backends.sqlite._rows import EXECUTION_COLUMNS
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import seed

PAGE = 51  # a page of 50 and the row that says there is another
OTHER_AGENT = "agi_other"

COMBINATIONS = [
    pytest.param(agent, phases, token, newest_first, id=f"agent={agent}-phases={len(phases)}-token={token}-{order}")
    for agent, phases, token, (newest_first, order) in itertools.product(
        [False, True], [[], [3], [2, 4], [1, 2, 3, 4, 5]], [False, True], [(False, "asc"), (True, "desc")]
    )
]


def _request(agent_id: str | None, phases: list[int], token_key: str | None, newest_first: bool):
    request = pb.ListExecutionsRequest(
        page_size=PAGE - 1,
        agent_instance_id=agent_id or "",
        phases=[pb.ExecutionPhase(phase) for phase in phases],
        newest_first=newest_first,
    )
    if token_key is not None:
        request.page_token = paging.encode_token(request, token_key)
    return request


def _plan(conn: sqlite3.Connection, sql: str, params: tuple) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@pytest.fixture
async def database(db_path):
    await seed(db_path)
    async with SqliteBackend(db_path):  # migrated to the current schema
        pass
    conn = sqlite3.connect(db_path)
    conn.execute("ANALYZE")  # statistics as a long-lived database would have them
    yield conn
    conn.close()


@pytest.mark.parametrize(("agent", "phases", "token", "newest_first"), COMBINATIONS)
async def test_the_plan_reads_one_index_range_constrained_by_every_filter(database, agent, phases, token, newest_first):
    sql, params = page_query("agi_x" if agent else "", phases, "exe_x" if token else None, newest_first, PAGE)
    plan = _plan(database, sql, params)
    reads = [line for line in plan if re.match(r"(SCAN|SEARCH) executions\b", line)]
    assert len(reads) == max(1, len(phases)), plan  # one range per phase
    expected = (["agent_instance_id=?"] if agent else []) + (["phase=?"] if phases else [])
    expected += [f"id{'<' if newest_first else '>'}?"] if token else []
    for line in reads:
        if not expected:  # no filter at all: the key order itself, stopped by LIMIT
            assert line == "SCAN executions USING INDEX sqlite_autoindex_executions_1", plan
            continue
        match = re.fullmatch(r"SEARCH executions USING (?:COVERING )?INDEX \S+ \((.*)\)", line)
        assert match, plan
        assert match.group(1).split(" AND ") == expected, plan
    sorts = [line for line in plan if "TEMP B-TREE" in line]
    if len(phases) <= 1:
        assert not sorts, plan  # the index gives the order
    else:  # merging the ranges: each sorted input is one subquery's page, at most PAGE rows
        assert len(sorts) == len(phases), plan
        assert all(line == "USE TEMP B-TREE FOR ORDER BY" for line in sorts), plan


def _bulk_insert(conn: sqlite3.Connection, first: int, count: int, agent_id: str, phase: int) -> None:
    conn.execute(
        f"""
        WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO executions ({", ".join(EXECUTION_COLUMNS)})
        SELECT printf('exe_%026d', i), printf('bulk-%d', i), ?, 'helper', 1, 'task', NULL, 1,
            1700000000000000 + i, 1700000000000000 + i,
            ?, '', NULL, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL
        FROM n
        """,
        (first, first + count - 1, agent_id, phase),
    )


def _steps(conn: sqlite3.Connection, sql: str, params: tuple) -> int:
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        conn.execute(sql, params).fetchall()
    finally:
        conn.set_progress_handler(None, 1)
    return counted[0]


async def test_a_page_costs_the_same_virtual_machine_steps_at_ten_times_the_rows(db_path):
    """Most rows belong to another agent and are SUCCEEDED: the worst case for a walked index."""
    [execution] = await seed(db_path, executions=1)
    agent_id = execution.agent_instance_id
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(
        "INSERT INTO agent_instance_versions SELECT ?, version, agent_instance FROM agent_instance_versions",
        (OTHER_AGENT,),
    )
    requests = [
        (agent, phases, newest_first)
        for agent in ("", agent_id)
        for phases in ([], [3], [4], [1, 3], [2, 4], [1, 2, 3, 4, 5])
        for newest_first in (False, True)
    ]
    costs = []
    try:
        for first, count in ((10, 2_000), (2_010, 18_000)):  # 2,000 rows, then 20,000
            conn.execute("BEGIN")
            _bulk_insert(conn, first, count, OTHER_AGENT, 3)
            conn.execute("COMMIT")
            conn.execute("ANALYZE")
            costs.append(
                [_steps(conn, *page_query(agent, phases, None, desc, PAGE)) for agent, phases, desc in requests]
            )
    finally:
        conn.close()
    small, large = costs
    for request, before, after in zip(requests, small, large, strict=True):
        assert after <= before * 1.2 + 50, f"{request}: {before} steps at 2,000 rows, {after} at 20,000"
