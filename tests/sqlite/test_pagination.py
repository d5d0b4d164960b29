"""Keyset pagination: a page costs the same at any depth and table size, and stays exact under writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stigmer_backend.backends.rules import paging
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import finish, raw, read_message, seed, send, start_worker

PHASE = pb.ExecutionPhase


def bulk_insert(path: Path, count: int, start: int = 0) -> None:
    """``count`` finished executions straight into the table, in one transaction (not through RPCs).

    Identifiers are ``exe_`` and 26 digits (valid identifier characters), which sort before every
    identifier the backend assigns, so rows created later by the backend come after them.
    """
    with raw(path) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        agent_id, agent_name, version = conn.execute("SELECT id, name, version FROM agent_instances").fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO executions (id, request_id, agent_instance_id, agent_instance_name, agent_version,
                input_message, input_data, version, create_us, update_us, phase, message, output_text,
                output_data, error_code, error_message, error_details, runner_id, lease_expire_us,
                start_us, end_us)
            SELECT printf('exe_%026d', i), printf('bulk-%d', i), ?, ?, ?, 'task ' || i, NULL, 3,
                1700000000000000 + i, 1700000000000000 + i, 3, 'done', 'answer ' || i, NULL, NULL, NULL,
                NULL, 'bulk-runner', NULL, 1700000000000000 + i, 1700000000000000 + i
            FROM n
            """,
            (start + 1, start + count, agent_id, agent_name, version),
        )
        conn.execute("COMMIT")


async def list_statements(backend: SqliteBackend, request: pb.ListExecutionsRequest) -> list[str]:
    """The SQL statements ``ListExecutions`` runs, with their parameters inlined."""
    statements: list[str] = []
    backend._conn.set_trace_callback(statements.append)
    try:
        await backend.list_executions(request)
    finally:
        backend._conn.set_trace_callback(None)
    return statements


def token_after(request: pb.ListExecutionsRequest, key: str) -> str:
    """The page token a client holds after paging up to ``key`` (tokens are opaque keys)."""
    return paging.encode_token(request, key)


@pytest.mark.parametrize(
    "request_fields",
    [
        {},
        {"newest_first": True},
        {"agent_instance_id": "AGENT"},
        {"phases": [PHASE.SUCCEEDED]},
    ],
    ids=["oldest-first", "newest-first", "by-agent", "by-one-phase"],
)
async def test_the_page_query_is_a_keyset_seek_on_an_index(db_path, request_fields):
    await seed(db_path)
    bulk_insert(db_path, 2000)
    async with SqliteBackend(db_path) as backend:
        agent_id = backend._conn.execute("SELECT id FROM agent_instances").fetchone()[0]
        fields = {k: (agent_id if v == "AGENT" else v) for k, v in request_fields.items()}
        request = pb.ListExecutionsRequest(page_size=50, **fields)
        request.page_token = token_after(request, f"exe_{1000:026d}")
        statements = await list_statements(backend, request)
        pages = [s for s in statements if s.startswith("SELECT id, request_id")]
        assert len(pages) == 1, statements
        [page] = pages
        assert "OFFSET" not in page.upper()
        assert "LIMIT 51" in page
        plan = " | ".join(row[3] for row in backend._conn.execute(f"EXPLAIN QUERY PLAN {page}"))
        # One index seek to the key, rows read in index order: no scan of the table, no sort.
        assert plan.startswith("SEARCH executions USING "), plan
        assert "id<?" in plan or "id>?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        # The lease-expiry check that precedes every list seeks the RUNNING executions only.
        [leases] = [s for s in statements if "lease_expire_us <=" in s]
        lease_plan = " | ".join(row[3] for row in backend._conn.execute(f"EXPLAIN QUERY PLAN {leases}"))
        assert lease_plan.startswith("SEARCH executions USING "), lease_plan


async def _vm_steps(backend: SqliteBackend, request: pb.ListExecutionsRequest) -> int:
    """SQLite virtual-machine instructions (in units of 10) spent answering one ListExecutions."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    backend._conn.set_progress_handler(count, 10)
    try:
        response = await backend.list_executions(request)
    finally:
        backend._conn.set_progress_handler(None, 0)
    assert len(response.executions) == 50
    return steps


async def test_a_page_costs_the_same_work_at_1000_and_40000_rows(tmp_path):
    """Counted in SQLite instructions, not seconds: deterministic, independent of the machine."""
    costs = {}
    for rows in (1000, 40000):
        path = tmp_path / f"{rows}.db"
        await seed(path)
        bulk_insert(path, rows)
        async with SqliteBackend(path) as backend:
            cases = {
                "first": pb.ListExecutionsRequest(page_size=50),
                "middle": pb.ListExecutionsRequest(page_size=50),
                "newest-first": pb.ListExecutionsRequest(page_size=50, newest_first=True),
                # Two phases: SQLite sorts, but stops each phase's index range after a page of rows.
                "two-phases-middle": pb.ListExecutionsRequest(page_size=50, phases=[PHASE.PENDING, PHASE.SUCCEEDED]),
            }
            for name, request in cases.items():
                if name.endswith("middle"):
                    request.page_token = token_after(request, f"exe_{rows // 2:026d}")
                costs[rows, name] = await _vm_steps(backend, request)
    for name in cases:
        assert costs[40000, name] <= 1.1 * costs[1000, name], costs


async def _page_through(backend: SqliteBackend, request: pb.ListExecutionsRequest, between_pages) -> list[str]:
    seen: list[str] = []
    while True:
        response = await backend.list_executions(request)
        seen.extend(e.id for e in response.executions)
        if not response.next_page_token:
            return seen
        request.page_token = response.next_page_token
        between_pages()


@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest-first", "newest-first"])
async def test_paging_while_another_process_inserts_is_complete_and_never_repeats(db_path, newest_first):
    """One execution is created by another process between every two pages (in lockstep, by pipe)."""
    initial = [e.id for e in await seed(db_path, executions=120)]
    worker = start_worker("inserter", {"db": str(db_path), "request_prefix": "during"})
    inserted: list[str] = []

    def insert_one() -> None:
        send(worker)
        inserted.append(read_message(worker)["inserted"])

    try:
        assert read_message(worker) == {"ready": True}
        async with SqliteBackend(db_path) as backend:
            seen = await _page_through(
                backend, pb.ListExecutionsRequest(page_size=7, newest_first=newest_first), insert_one
            )
        send(worker, "stop")
        finish(worker)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert len(inserted) >= len(initial) // 7  # the other process really wrote during the paging
    assert len(seen) == len(set(seen))  # never twice
    assert seen == sorted(seen, reverse=newest_first)  # in order
    with raw(db_path) as conn:
        everything = [row[0] for row in conn.execute("SELECT id FROM executions ORDER BY id")]
    assert everything == sorted(initial + inserted)
    if newest_first:
        # Executions created during the paging sort before the current page: none is returned,
        # and every one that existed at the first page is.
        assert seen == sorted(initial, reverse=True)
    else:
        # Created during the paging means after the current page: each is returned, none skipped.
        assert seen == everything


def test_the_page_token_carries_only_a_key_and_a_fingerprint():
    request = pb.ListExecutionsRequest(page_size=50)
    token = token_after(request, "exe_X")
    import base64

    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert set(payload) == {"v", "f", "k"} and payload["k"] == "exe_X"
