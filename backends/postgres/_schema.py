"""The PostgreSQL schema and its versioned migrations (table ``stigmer_schema``).

Migrations run in one transaction holding a transaction-level advisory lock,
so replicas starting together migrate once, a database is always at exactly
one schema version (PostgreSQL DDL is transactional), and a database from a
newer schema than this code knows is refused before anything is written. A
database already at this version needs no DDL privilege: a role that may
only read and write rows can serve it.

Executions keep their status in columns; a trigger copies every version of
the status into ``execution_history`` and sends a ``NOTIFY`` on
``NOTIFY_CHANNEL`` with the execution id, delivered when the transaction
commits: that is how ``WatchExecution`` on any replica learns of a change
without polling, and the history is how it catches up after a reconnect.
History older than ten minutes is pruned by the same trigger.
"""

from __future__ import annotations

import psycopg
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["MIGRATION_LOCK", "NOTIFY_CHANNEL", "RUNNING_PHASE", "SCHEMA_VERSION", "STATUS_COLUMN_NAMES", "migrate"]

NOTIFY_CHANNEL = "stigmer_executions"
MIGRATION_LOCK = 0x5374_676D_0000  # advisory lock ids: "Stgm" + a small number per purpose
RUNNING_PHASE = int(pb.ExecutionPhase.RUNNING)
"""The stored ``phase`` of a RUNNING execution: queries spell it as the partial index does, so they can use it."""
_PHASES = sorted(int(phase) for phase in pb.ExecutionPhase if phase != pb.ExecutionPhase.UNSPECIFIED)

STATUS_COLUMN_NAMES = (
    "phase",
    "message",
    "output_text",
    "output_data",
    "error_code",
    "error_message",
    "error_details",
    "runner_id",
    "lease_expire_time",
    "start_time",
    "end_time",
)
_STATUS_COLUMNS_DDL = f"""
    phase smallint NOT NULL CHECK (phase BETWEEN {_PHASES[0]} AND {_PHASES[-1]}),
    message bytea NOT NULL,
    output_text bytea,
    output_data text,
    error_code text,
    error_message bytea,
    error_details text,
    runner_id text NOT NULL,
    lease_expire_time timestamptz,
    start_time timestamptz,
    end_time timestamptz
"""
_NEW_STATUS = ", ".join(f"NEW.{name}" for name in STATUS_COLUMN_NAMES)

# Structured values (Struct, error details, agent instances) are JSON *text*, not jsonb:
# jsonb normalises numbers (-0.0 becomes 0) and key order, and the contract wants them back as sent.
# Free text a caller sends (messages, output) is UTF-8 in bytea: PostgreSQL text cannot hold U+0000.
# Keys that are paged or compared with max() use the "C" collation: bytewise, as the ids' order and
# the contract's name order are defined, whatever the database's default locale.
_V1 = f"""
CREATE TABLE agent_instances (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE,
    version integer NOT NULL
);
-- Every applied version of every agent instance: executions point at the version they snapshot,
-- so applies and deletes never change them.
CREATE TABLE agent_instance_versions (
    agent_instance_id text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    agent_instance text NOT NULL,
    PRIMARY KEY (agent_instance_id, version)
);
CREATE TABLE executions (
    id text COLLATE "C" PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    agent_instance_id text COLLATE "C" NOT NULL,
    agent_instance_name text NOT NULL,
    agent_version integer NOT NULL,
    input_message bytea NOT NULL,
    input_data text,
    version bigint NOT NULL CHECK (version >= 1),
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL,
    {_STATUS_COLUMNS_DDL},
    FOREIGN KEY (agent_instance_id, agent_version) REFERENCES agent_instance_versions (agent_instance_id, version)
);
CREATE INDEX executions_by_agent ON executions (agent_instance_id, id);
CREATE INDEX executions_by_phase ON executions (phase, id);
CREATE INDEX executions_running_leases ON executions (lease_expire_time) WHERE phase = {RUNNING_PHASE};
CREATE TABLE execution_history (
    execution_id text COLLATE "C" NOT NULL REFERENCES executions (id),
    version bigint NOT NULL,
    update_time timestamptz NOT NULL,
    {_STATUS_COLUMNS_DDL},
    PRIMARY KEY (execution_id, version)
);
CREATE FUNCTION stigmer_record_execution_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO execution_history (execution_id, version, update_time, {", ".join(STATUS_COLUMN_NAMES)})
    VALUES (NEW.id, NEW.version, NEW.update_time, {_NEW_STATUS});
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM execution_history
        WHERE execution_id = NEW.id AND update_time < NEW.update_time - interval '10 minutes';
    END IF;
    PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER executions_history AFTER INSERT OR UPDATE OF version ON executions
    FOR EACH ROW EXECUTE FUNCTION stigmer_record_execution_version();
-- Values only ever as sealed ciphertext (stigmer_backend.backends.encryption); the single key-check row
-- records the master key they are sealed under.
CREATE TABLE secrets (
    name text COLLATE "C" PRIMARY KEY,
    version integer NOT NULL CHECK (version >= 1),
    create_time timestamptz NOT NULL,
    update_time timestamptz NOT NULL,
    ciphertext bytea NOT NULL
);
CREATE TABLE secret_key_check (
    id integer PRIMARY KEY CHECK (id = 1),
    key_id bytea NOT NULL,
    check_value bytea NOT NULL
);
"""

MIGRATIONS: list[str] = [_V1]
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: psycopg.AsyncConnection, where: str) -> None:
    """Brings the database to ``SCHEMA_VERSION``, or refuses a newer one (``INTERNAL``, nothing written)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        probe = await (await conn.execute("SELECT to_regclass('stigmer_schema') IS NOT NULL")).fetchone()
        assert probe is not None  # a SELECT without FROM has one row
        exists = probe[0]
        row = await (await conn.execute("SELECT version FROM stigmer_schema")).fetchone() if exists else None
        found = 0 if row is None else row[0]
        if found > SCHEMA_VERSION:
            raise GRPCError(
                Status.INTERNAL,
                f"{where} was written by a newer Stigmer (schema version {found}; this one knows up to "
                f"{SCHEMA_VERSION}); upgrade Stigmer to use it",
            )
        if found == SCHEMA_VERSION:
            return  # nothing to do, and nothing that needs more than the privileges to read and write rows
        if not exists:
            await conn.execute("CREATE TABLE stigmer_schema (version integer NOT NULL)")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[version - 1])
        if row is None:
            await conn.execute("INSERT INTO stigmer_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        else:
            await conn.execute("UPDATE stigmer_schema SET version = %s", (SCHEMA_VERSION,))
