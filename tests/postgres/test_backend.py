"""The PostgreSQL backend in-process: opening errors, the schema, sealed secrets, and watches by NOTIFY."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.encryption import MasterKey, MasterKeySource, unseal
from stigmer_backend.backends.postgres import PostgresBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC
from tests.remote_fixtures import isolated_env

STIGMER = str(Path(sys.executable).parent / "stigmer")
RUNNING, SUCCEEDED = pb.ExecutionPhase.RUNNING, pb.ExecutionPhase.SUCCEEDED


def key_source(text: str) -> MasterKeySource:
    return MasterKeySource(environ={"STIGMER_MASTER_KEY": text}, keychain=None)


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def open_error(conninfo: str) -> GRPCError:
    with pytest.raises(GRPCError) as raised:
        await PostgresBackend(conninfo, connect_timeout=5).open()
    return raised.value


async def test_an_unreachable_server_is_one_unavailable_line(cluster):
    error = await open_error("postgresql://nobody@127.0.0.1:1/stigmer")
    assert error.status == Status.UNAVAILABLE
    assert error.message == "cannot reach database stigmer on 127.0.0.1:1: Connection refused"


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("postgresql://alice:hunter2%zz@db.invalid/stigmer", 'invalid percent-encoded token: "…"'),
        ("postgresql://alice:hunter2@[::1/stigmer", 'matching "…" in IPv6 host address in URI: "…"'),
        ("host=db.invalid password=hunter2 more", 'missing "…" after "…" in connection info string'),
        ("postgresql://alice@db.invalid/stigmer?bogus=1", 'invalid URI query parameter: "bogus"'),
    ],
)
async def test_a_malformed_connection_string_is_one_line_that_never_shows_the_password(conninfo, shown):
    error = await open_error(conninfo)
    assert error.status == Status.FAILED_PRECONDITION
    assert error.message.startswith("the connection string of the PostgreSQL database is not valid: ")
    assert shown in error.message and "\n" not in error.message
    assert "hunter2" not in error.message


def test_the_server_command_never_shows_the_password_of_a_malformed_connection_string(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    result = subprocess.run(
        [STIGMER, "server", "--port", "0", "--backend", "postgresql://alice:hunter2%zz@db.invalid/stigmer"],
        env=isolated_env(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: FAILED_PRECONDITION: the connection string of the PostgreSQL database")
    assert "hunter2" not in result.stderr + result.stdout


async def test_a_missing_database_is_named(cluster):
    error = await open_error(cluster.conninfo("no_such_db"))
    assert error.status == Status.INTERNAL
    assert error.message.startswith("the database no_such_db on ") and error.message.endswith(
        "create it (createdb) first"
    )


async def test_bad_credentials_are_refused_without_echoing_the_password(cluster, database):
    cluster.require_password("alice", "right-password")
    wrong = database.replace("postgres@", "alice:hunter2-wrong@")
    error = await open_error(wrong)
    assert error.status == Status.INTERNAL and "refused the credentials" in error.message
    assert "password authentication failed" in error.message and "hunter2" not in error.message
    right = database.replace("postgres@", "alice:right-password@")
    error = await open_error(right)
    assert error.status == Status.INTERNAL and error.message.startswith("the database user lacks a privilege")
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("GRANT CREATE ON SCHEMA public TO alice")
    async with PostgresBackend(right) as backend:
        assert (await backend.get_backend_info(pb.GetBackendInfoRequest())).backend_kind == "postgresql"


def test_the_server_command_reports_a_missing_database_in_one_line(cluster, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    missing = cluster.conninfo("absent_db").replace("postgres@", "postgres:s3cret@")
    result = subprocess.run(
        [STIGMER, "server", "--port", "0", "--backend", missing],
        env=isolated_env(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: INTERNAL: the database absent_db on ")
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


async def test_replicas_opening_a_new_database_together_migrate_it_once(database):
    backends = [PostgresBackend(database) for _ in range(4)]
    await asyncio.gather(*(backend.open() for backend in backends))
    for backend in backends:
        await backend.aclose()
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT version FROM stigmer_schema").fetchall() == [(1,)]


async def test_a_newer_schema_is_refused_and_left_untouched(database):
    async with PostgresBackend(database):
        pass
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE stigmer_schema SET version = 7")
        conn.execute("CREATE TABLE from_the_future (x int)")
    error = await open_error(database)
    assert error.status == Status.INTERNAL
    assert "newer Stigmer (schema version 7; this one knows up to 1)" in error.message
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT version FROM stigmer_schema").fetchall() == [(7,)]
        assert conn.execute("SELECT to_regclass('from_the_future') IS NOT NULL").fetchone() == (True,)


async def test_secrets_are_stored_sealed_in_the_sqlite_format_and_a_dump_holds_no_plaintext(cluster, database):
    value = "pg-secret-" + os.urandom(12).hex()
    key_text = new_key()
    async with PostgresBackend(database, master_key=key_source(key_text)) as backend:
        await backend.put_secret(pb.PutSecretRequest(name="API_TOKEN", value=value))
    dump = subprocess.run(
        [str(cluster.bin_dir / "pg_dump"), "--data-only", database], capture_output=True, timeout=60, check=True
    ).stdout
    assert b"API_TOKEN" in dump and value.encode() not in dump
    with psycopg.connect(database) as conn:
        (sealed,) = conn.execute("SELECT ciphertext FROM secrets WHERE name = 'API_TOKEN'").fetchone()
    assert unseal(MasterKey.from_text(key_text, "test"), "API_TOKEN", bytes(sealed), version=1) == value


async def test_a_replica_with_another_master_key_is_refused_naming_where_its_key_came_from(database):
    async with PostgresBackend(database, master_key=key_source(new_key())) as first:
        await first.put_secret(pb.PutSecretRequest(name="SHARED", value="v"))
    async with PostgresBackend(database, master_key=key_source(new_key())) as second:
        with pytest.raises(GRPCError) as raised:
            await second.put_secret(pb.PutSecretRequest(name="OTHER", value="w"))
    assert raised.value.status == Status.INTERNAL
    assert "the master key in the STIGMER_MASTER_KEY environment variable does not match" in raised.value.message
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT name FROM secrets").fetchall() == [("SHARED",)]


async def prepare(backend: PostgresBackend) -> pb.Execution:
    await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="worker", spec=SPEC))
    created = await backend.create_execution(
        pb.CreateExecutionRequest(
            request_id="watched",
            agent_instance=pb.AgentInstanceRef(name="worker"),
            input=pb.ExecutionInput(message="x"),
        )
    )
    return created.execution


async def advance(backend: PostgresBackend, execution_id: str, version: int, phase=RUNNING) -> int:
    request = pb.UpdateExecutionStatusRequest(
        execution_id=execution_id, phase=phase, runner_id="r", expected_version=version, message=f"v{version + 1}"
    )
    return (await backend.update_execution_status(request)).execution.version


async def test_a_watch_is_woken_by_notifications_from_another_backend_instance(database):
    async with PostgresBackend(database) as watching, PostgresBackend(database) as writing:
        execution = await prepare(writing)
        versions: list[int] = []
        first = asyncio.Event()

        async def watch() -> None:
            async for response in watching.watch_execution(pb.WatchExecutionRequest(execution_id=execution.id)):
                versions.append(response.execution.version)
                first.set()

        task = asyncio.create_task(watch())
        await asyncio.wait_for(first.wait(), 30)
        version = execution.version
        for _ in range(20):
            version = await advance(writing, execution.id, version)
        version = await advance(writing, execution.id, version, SUCCEEDED)
        await asyncio.wait_for(task, 30)
    assert versions == list(range(1, version + 1))
    assert watching._changes.notifications >= 1 and watching._changes.connects == 1
    assert writing._changes.connects == 0, "only a backend with watchers listens"


async def test_versions_written_while_the_listener_was_cut_off_are_caught_up_after_it_reconnects(cluster, database):
    async with PostgresBackend(database) as writing:
        execution = await prepare(writing)
        with psycopg.connect(database, autocommit=True) as admin:  # a role that reads and writes rows, no DDL
            admin.execute("CREATE ROLE watcher LOGIN")
            admin.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO watcher")
        version = execution.version
        async with PostgresBackend(database.replace("postgres@", "watcher@"), pool_size=2) as watching:
            seen: list[int] = []
            first = asyncio.Event()

            async def watch() -> None:
                async for response in watching.watch_execution(pb.WatchExecutionRequest(execution_id=execution.id)):
                    seen.append(response.execution.version)
                    first.set()
                    if len(seen) == 6:
                        return

            task = asyncio.create_task(watch())
            await asyncio.wait_for(first.wait(), 30)
            with psycopg.connect(database, autocommit=True) as admin:
                # The listener cannot come back until the role may log in again; write meanwhile.
                admin.execute("ALTER ROLE watcher NOLOGIN")
                (cut,) = admin.execute(  # returns once the listener's server process has exited
                    "SELECT array_agg(pg_terminate_backend(pid, 30000)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %'"
                ).fetchone()
                assert cut == [True]
                for _ in range(5):
                    version = await advance(writing, execution.id, version)
                assert seen == [1], "nothing can tell the watcher while its listener is away"
                admin.execute("ALTER ROLE watcher LOGIN")
            await asyncio.wait_for(task, 30)
            assert seen == list(range(1, version + 1))
            assert watching._changes.connects == 2, "delivered by the catch-up read after reconnecting"


async def test_a_migration_that_fails_leaves_nothing_behind(database):
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE secrets (unrelated int)")  # someone else's table, in the way of the schema
    error = await open_error(database)
    assert error.status == Status.INTERNAL
    assert 'relation "secrets" already exists' in error.message and "\n" not in error.message
    with psycopg.connect(database) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == [("secrets",)], "not one table of the failed migration, not even its version table"


async def test_many_watches_share_one_listening_connection(database):
    async with PostgresBackend(database, pool_size=4) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="worker", spec=SPEC))
        created = [
            (
                await backend.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=f"many-{n}",
                        agent_instance=pb.AgentInstanceRef(name="worker"),
                        input=pb.ExecutionInput(message=str(n)),
                    )
                )
            ).execution
            for n in range(20)
        ]
        streams = [backend.watch_execution(pb.WatchExecutionRequest(execution_id=e.id)) for e in created]
        assert [(await anext(stream)).execution.version for stream in streams] == [1] * 20
        pending = [asyncio.ensure_future(anext(stream)) for stream in streams]
        with psycopg.connect(database) as admin:
            listening = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'").fetchone()
        assert listening == (1,)
        for execution in created:
            await advance(backend, execution.id, 1)
        versions = await asyncio.wait_for(asyncio.gather(*pending), 30)
        assert [response.execution.version for response in versions] == [2] * 20
        for stream in streams:
            await stream.aclose()
        assert backend._changes.connects == 1
