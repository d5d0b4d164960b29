"""The SQLite schema and its versioned migrations (``PRAGMA user_version``).

Each migration runs with the version bump in one ``BEGIN IMMEDIATE``
transaction, so a database is always at exactly one schema version, and
concurrent openers never migrate twice. A database from a newer schema than
this code knows is refused and left untouched.

Executions keep their status in columns; a trigger copies every version of
the status into ``execution_history``, which is how ``WatchExecution``
delivers every change with no gap, including changes from other processes.
History older than ``HISTORY_WINDOW_US`` is pruned by the same trigger: a
watcher polls every few milliseconds, so only a watcher stalled for that long
could miss a version, and it is told so. Another trigger appends the id of
every changed execution to ``execution_changes``, numbered in commit order, so
one reader per process learns which executions changed with one query and
wakes only their watchers (``_change_feed.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["CHANGES_KEPT", "HISTORY_WINDOW_US", "RUNNING_PHASE", "SCHEMA_VERSION", "migrate", "refuse_newer"]

RUNNING_PHASE = int(pb.ExecutionPhase.RUNNING)
"""The stored ``phase`` of a RUNNING execution: queries must spell it as the partial index does."""
_PHASES = sorted(int(phase) for phase in pb.ExecutionPhase if phase != pb.ExecutionPhase.UNSPECIFIED)

HISTORY_WINDOW_US = 10 * 60 * 1_000_000

_STATUS_COLUMNS = {
    "phase": int,
    "message": str,
    "output_text": str,
    "output_data": str,
    "error_code": str,
    "error_message": str,
    "error_details": str,
    "runner_id": str,
    "lease_expire_us": int,
    "start_us": int,
    "end_us": int,
}
STATUS_COLUMN_NAMES = tuple(_STATUS_COLUMNS)


def _v1(db: sqlite_utils.Database) -> None:
    db.table("agent_instances").create(
        {"id": str, "name": str, "version": int},
        pk="id",
        not_null={"id", "name", "version"},
    )
    db.table("agent_instances").create_index(["name"], unique=True)
    # Every applied version of every agent instance: executions point at the
    # version they snapshot, so applies and deletes never change them.
    db.table("agent_instance_versions").create(
        {"agent_instance_id": str, "version": int, "agent_instance": str},
        pk=("agent_instance_id", "version"),
        not_null={"agent_instance_id", "version", "agent_instance"},
    )
    db.execute(
        f"""
        CREATE TABLE executions (
            id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            agent_instance_id TEXT NOT NULL,
            agent_instance_name TEXT NOT NULL,
            agent_version INTEGER NOT NULL,
            input_message TEXT NOT NULL,
            input_data TEXT,
            version INTEGER NOT NULL CHECK (version >= 1),
            create_us INTEGER NOT NULL,
            update_us INTEGER NOT NULL,
            phase INTEGER NOT NULL CHECK (phase BETWEEN {_PHASES[0]} AND {_PHASES[-1]}),
            message TEXT NOT NULL,
            output_text TEXT,
            output_data TEXT,
            error_code TEXT,
            error_message TEXT,
            error_details TEXT,
            runner_id TEXT NOT NULL,
            lease_expire_us INTEGER,
            start_us INTEGER,
            end_us INTEGER,
            FOREIGN KEY (agent_instance_id, agent_version)
                REFERENCES agent_instance_versions (agent_instance_id, version)
        )
        """
    )
    db.table("executions").create_index(["agent_instance_id", "id"])
    db.table("executions").create_index(["phase", "id"])
    db.execute(f"CREATE INDEX executions_running_leases ON executions (lease_expire_us) WHERE phase = {RUNNING_PHASE}")
    columns = ", ".join(STATUS_COLUMN_NAMES)
    db.execute(
        f"""
        CREATE TABLE execution_history (
            execution_id TEXT NOT NULL REFERENCES executions (id),
            version INTEGER NOT NULL,
            update_us INTEGER NOT NULL,
            {", ".join(f"{name} {'INTEGER' if kind is int else 'TEXT'}" for name, kind in _STATUS_COLUMNS.items())},
            PRIMARY KEY (execution_id, version)
        ) WITHOUT ROWID
        """
    )
    new_values = ", ".join(f"NEW.{name}" for name in STATUS_COLUMN_NAMES)
    record = f"""
        INSERT INTO execution_history (execution_id, version, update_us, {columns})
        VALUES (NEW.id, NEW.version, NEW.update_us, {new_values});
    """
    db.execute(f"CREATE TRIGGER executions_history_on_insert AFTER INSERT ON executions BEGIN {record} END")
    db.execute(
        f"""
        CREATE TRIGGER executions_history_on_update AFTER UPDATE OF version ON executions BEGIN
            {record}
            DELETE FROM execution_history
            WHERE execution_id = NEW.id AND update_us < NEW.update_us - {HISTORY_WINDOW_US};
        END
        """
    )


def _v2_secrets(db: sqlite_utils.Database) -> None:
    # Values only ever as sealed ciphertext (stigmer_backend.backends.encryption); the
    # single key-check row records the master key they are sealed under.
    db.execute(
        """
        CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            version INTEGER NOT NULL CHECK (version >= 1),
            create_us INTEGER NOT NULL,
            update_us INTEGER NOT NULL,
            ciphertext BLOB NOT NULL
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE secret_key_check (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            key_id BLOB NOT NULL,
            check_value BLOB NOT NULL
        )
        """
    )


def _v3_list_filter_indexes(db: sqlite_utils.Database) -> None:
    # ListExecutions filtered by agent instance *and* phase walked the phase index, reading every
    # row of that phase to find the agent's (352 ms at 1M rows). With this index each phase's page
    # is one range read; the query plan of every filter combination is pinned by a test.
    db.execute("CREATE INDEX executions_agent_phase ON executions (agent_instance_id, phase, id)")


# Changes kept in execution_changes: a reader further behind than this wakes every watcher.
CHANGES_KEPT = 10_000


def _v4_change_log(db: sqlite_utils.Database) -> None:
    # seq is the rowid: max + 1 at each insert, so it follows commit order (the write lock
    # serialises inserts) and a rolled-back change leaves no gap. Only the oldest rows are ever
    # deleted, so the newest seq is never reused.
    db.execute("CREATE TABLE execution_changes (seq INTEGER PRIMARY KEY, execution_id TEXT NOT NULL)")
    record = f"""
        INSERT INTO execution_changes (execution_id) VALUES (NEW.id);
        DELETE FROM execution_changes WHERE seq <= (SELECT max(seq) FROM execution_changes) - {CHANGES_KEPT};
    """
    db.execute(f"CREATE TRIGGER executions_change_on_insert AFTER INSERT ON executions BEGIN {record} END")
    db.execute(f"CREATE TRIGGER executions_change_on_update AFTER UPDATE OF version ON executions BEGIN {record} END")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1,
    _v2_secrets,
    _v3_list_filter_indexes,
    _v4_change_log,
]
SCHEMA_VERSION = len(MIGRATIONS)


def refuse_newer(conn: sqlite3.Connection, path: str) -> int:
    """The database's schema version; ``INTERNAL`` if newer than this code knows. Reads only."""
    found: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise GRPCError(
            Status.INTERNAL,
            f"{path} was written by a newer Stigmer (schema version {found}; this one knows up to "
            f"{SCHEMA_VERSION}); upgrade Stigmer to use it",
        )
    return found


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Brings the database to ``SCHEMA_VERSION``, or refuses a newer one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = refuse_newer(conn, path)
        if found != SCHEMA_VERSION:
            # Imported only to migrate: it is half the start-up of a CLI command on a current database.
            import sqlite_utils

            db = sqlite_utils.Database(conn)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](db)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
