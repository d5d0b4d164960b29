"""The three secret RPCs of the SQLite backend, its migration, and what reaches SQL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlite_utils
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._schema import MIGRATIONS
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import failure

from .workload import agent_spec, apply_agent, context_of, file_source, put, running_execution, values_of

VALUE = "only-ciphertext-reaches-sql-7e3f"


async def test_put_creates_then_replaces_with_metadata_only(backend: SqliteBackend) -> None:
    first = await put(backend, "API_KEY", VALUE)
    assert first.created and first.secret.version == 1
    assert first.secret.create_time == first.secret.update_time
    assert VALUE.encode() not in bytes(first)
    again = await put(backend, "API_KEY", VALUE)  # the same value: still a write, and no hint it was the same
    assert (again.created, again.secret.version) == (False, 2)
    assert again.secret.create_time == first.secret.create_time < again.secret.update_time
    assert await values_of(backend, ["API_KEY"]) == {"API_KEY": VALUE}


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.PutSecretRequest(name="", value="v"), "name"),
        (pb.PutSecretRequest(name="bad-name", value="v"), "name"),
        (pb.PutSecretRequest(name="A" * 129, value="v"), "name"),
        (pb.PutSecretRequest(name="OK", value=""), "value"),
        (pb.PutSecretRequest(name="OK", value="x" * 65_537), "value"),
    ],
)
async def test_invalid_puts_write_nothing(home: Path, backend: SqliteBackend, request_, field: str) -> None:
    error = await failure(backend.put_secret(request_))
    assert error.status == Status.INVALID_ARGUMENT and error.message.startswith(f"{field}: ")
    assert "x" * 10 not in error.message  # a value is measured, never quoted
    assert (await backend.list_secrets(pb.ListSecretsRequest())).secrets == []
    assert not (home / "master.key").exists()


async def test_list_pages_by_name_and_delete(backend: SqliteBackend) -> None:
    names = ["b", "A", "_x", "B2", "a"]
    for name in names:
        await put(backend, name, VALUE)
    seen, token, pages = [], "", 0
    while True:
        page = await backend.list_secrets(pb.ListSecretsRequest(page_size=2, page_token=token))
        assert len(page.secrets) <= 2 and VALUE.encode() not in bytes(page)
        seen += [secret.name for secret in page.secrets]
        token, pages = page.next_page_token, pages + 1
        if not token:
            break
    assert seen == sorted(names, key=str.encode) and pages == 3
    await apply_agent(backend, "one", agent_spec())
    await apply_agent(backend, "two", agent_spec())
    foreign = (await backend.list_agent_instances(pb.ListAgentInstancesRequest(page_size=1))).next_page_token
    error = await failure(backend.list_secrets(pb.ListSecretsRequest(page_token=foreign)))
    assert error.status == Status.INVALID_ARGUMENT and error.message.startswith("page_token: ")
    assert (await failure(backend.list_secrets(pb.ListSecretsRequest(page_size=-1)))).status == Status.INVALID_ARGUMENT

    await backend.delete_secret(pb.DeleteSecretRequest(name="B2"))
    error = await failure(backend.delete_secret(pb.DeleteSecretRequest(name="B2")))
    assert (error.status, error.message) == (Status.NOT_FOUND, "secret 'B2' not found")
    error = await failure(backend.delete_secret(pb.DeleteSecretRequest(name="no-such")))
    assert error.status == Status.INVALID_ARGUMENT
    remaining = [secret.name for secret in (await backend.list_secrets(pb.ListSecretsRequest())).secrets]
    assert remaining == ["A", "_x", "a", "b"]


async def test_only_ciphertext_is_ever_bound_to_a_statement(backend: SqliteBackend) -> None:
    statements: list[str] = []
    backend._db.set_trace_callback(statements.append)
    await put(backend, "API_KEY", VALUE)
    await put(backend, "API_KEY", VALUE)
    await apply_agent(backend, "uses-it", agent_spec(credentials="${.secrets.API_KEY}"))
    context = await context_of(backend, await running_execution(backend, "uses-it"))
    assert context.secrets == {"API_KEY": VALUE}
    await backend.rotate_master_key()
    backend._db.set_trace_callback(None)
    assert any("INSERT INTO secrets" in statement for statement in statements)
    assert any("UPDATE secrets SET ciphertext" in statement for statement in statements)
    for statement in statements:
        assert VALUE not in statement and VALUE.encode().hex() not in statement.lower()


async def test_a_version_1_database_is_migrated_and_keeps_its_data(home: Path) -> None:
    path = home / "local.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        MIGRATIONS[0](sqlite_utils.Database(conn))
        conn.execute("PRAGMA user_version = 1")
    async with SqliteBackend(path, master_key=file_source(home)) as db:
        await apply_agent(db, "before", agent_spec())
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"secrets", "secret_key_check", "agent_instances"} <= tables
    async with SqliteBackend(path, master_key=file_source(home)) as db:
        await put(db, "API_KEY", VALUE)
        assert await values_of(db, ["API_KEY"]) == {"API_KEY": VALUE}
        ref = pb.AgentInstanceRef(name="before")
        assert (await db.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=ref))).agent_instance.version == 1
