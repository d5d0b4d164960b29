"""Versioned schema migrations: automatic, atomic, and never applied to a newer database."""

from __future__ import annotations

import sqlite3

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend, _schema
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import file_bytes, finish, raw, read_message, seed, send, start_worker

TABLES = {"agent_instances", "agent_instance_versions", "executions", "execution_history"}


def user_version(path) -> int:
    with raw(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(path) -> set[str]:
    with raw(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_a_fresh_database_is_migrated_to_the_current_version(db_path):
    async with SqliteBackend(db_path):
        pass
    assert user_version(db_path) == _schema.SCHEMA_VERSION >= 1
    assert TABLES <= tables(db_path)


async def test_reopening_a_current_database_changes_nothing(db_path):
    await seed(db_path, executions=3)
    before = file_bytes(db_path)
    assert list(before) == ["local.db"]  # closed cleanly: the WAL was checkpointed and removed
    async with SqliteBackend(db_path) as backend:
        listed = await backend.list_executions(pb.ListExecutionsRequest())
        assert len(listed.executions) == 3
    assert file_bytes(db_path) == before


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
async def test_a_database_from_a_newer_schema_is_refused_and_left_untouched(db_path, journal_mode):
    """Refused with a message naming the file, whatever journal mode the newer code chose."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.execute("INSERT INTO from_the_future VALUES (1)")
    conn.execute(f"PRAGMA user_version = {_schema.SCHEMA_VERSION + 1}")
    conn.close()
    before = file_bytes(db_path)
    with pytest.raises(GRPCError) as caught:
        SqliteBackend(db_path)
    assert caught.value.status == Status.INTERNAL
    assert str(db_path) in caught.value.message
    assert f"schema version {_schema.SCHEMA_VERSION + 1}" in caught.value.message
    assert "newer" in caught.value.message
    assert file_bytes(db_path) == before


async def test_a_failing_migration_leaves_the_database_at_its_previous_version(db_path, monkeypatch):
    """Migrations and the version bump commit together: a failure in any step keeps none of them."""
    await seed(db_path, executions=2)
    previous = _schema.SCHEMA_VERSION

    def adds_then_fails(db) -> None:
        db.execute("CREATE TABLE half_done (x)")
        db.execute("ALTER TABLE executions ADD COLUMN half_done_column TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, adds_then_fails])
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", previous + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        SqliteBackend(db_path)
    assert user_version(db_path) == previous
    assert "half_done" not in tables(db_path)
    with raw(db_path) as conn:
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(executions)")}
        assert "half_done_column" not in columns
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_an_older_database_is_upgraded_in_place_keeping_its_data(db_path, monkeypatch):
    created = await seed(db_path, executions=2)
    previous = _schema.SCHEMA_VERSION

    def adds_a_table(db) -> None:
        db.execute("CREATE TABLE added_later (x)")

    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, adds_a_table])
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", previous + 1)
    async with SqliteBackend(db_path) as backend:
        listed = await backend.list_executions(pb.ListExecutionsRequest())
        assert [e.id for e in listed.executions] == [e.id for e in created]
    assert user_version(db_path) == previous + 1
    assert "added_later" in tables(db_path)


@pytest.mark.parametrize("old_version", range(1, _schema.SCHEMA_VERSION))
async def test_a_database_at_each_older_version_is_upgraded_keeping_its_data(db_path, monkeypatch, old_version):
    """The real migrations, from a file written by code that knew only the first ``old_version``."""
    with monkeypatch.context() as older_code:
        older_code.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:old_version])
        older_code.setattr(_schema, "SCHEMA_VERSION", old_version)
        created = await seed(db_path, executions=3)
        assert user_version(db_path) == old_version
    async with SqliteBackend(db_path) as backend:
        listed = await backend.list_executions(pb.ListExecutionsRequest())
        assert listed.executions == created
        agent = await backend.get_agent_instance(
            pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="helper"))
        )
        assert agent.agent_instance.version == 1
    assert user_version(db_path) == _schema.SCHEMA_VERSION
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_processes_opening_a_new_file_at_once_migrate_it_exactly_once(db_path):
    """Six processes open one file that does not exist yet, released together."""
    workers = [start_worker("opener", {"db": str(db_path)}) for _ in range(6)]
    try:
        for worker in workers:
            assert read_message(worker) == {"ready": True}
        for worker in workers:
            send(worker)
        results = [read_message(worker) for worker in workers]
        for worker in workers:
            finish(worker)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    # A second migration would fail with "table ... already exists"; a lost race with "locked".
    assert results == [{"ok": True, "kind": "sqlite"}] * 6
    assert user_version(db_path) == _schema.SCHEMA_VERSION
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
