"""The master key on PostgreSQL: ``MasterKeyAdmin`` (status, rotation in one transaction) and the CLI's key commands.

The policy is the one SQLite uses (``backends/encryption``); these tests check
the adapter's mapping: what it reads, what it writes, and that a rotation is
all or nothing in the database while the key moves only after the commit.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from grpclib.const import Status

from stigmer_backend.backends.encryption import MasterKey, MasterKeyAdmin, MasterKeySource, unseal
from stigmer_backend.backends.postgres import PostgresBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import failure
from tests.remote_fixtures import isolated_env

STIGMER = str(Path(sys.executable).parent / "stigmer")
NAMES = ("ALPHA", "BETA", "GAMMA")


def file_source(home: Path) -> MasterKeySource:
    """The key file in ``home`` only: no environment variable, no keychain."""
    return MasterKeySource(home, environ={}, keychain=None)


def key_in(home: Path) -> MasterKey:
    return MasterKey.from_text((home / "master.key").read_text(), "test")


def stored(database: str) -> dict[str, bytes]:
    """Each secret's ciphertext, and the key check's key id under ``""``, read straight from the tables."""
    with psycopg.connect(database) as conn:
        rows = dict(conn.execute("SELECT name, ciphertext FROM secrets").fetchall())
        check = conn.execute("SELECT key_id FROM secret_key_check").fetchall()
    return {**{name: bytes(value) for name, value in rows.items()}, "": b"".join(bytes(row[0]) for row in check)}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


async def put_all(backend: PostgresBackend) -> None:
    for name in NAMES:
        await backend.put_secret(pb.PutSecretRequest(name=name, value=f"value of {name}"))


async def test_status_before_any_secret_and_after_one(database, home):
    async with PostgresBackend(database, master_key=file_source(home)) as backend:
        assert isinstance(backend, MasterKeyAdmin)
        before = await backend.master_key_status()
        assert (before.secrets, before.matches, before.place) == (0, None, "")
        assert before.new_key_place == str(home / "master.key") and before.database == backend.where
        await backend.put_secret(pb.PutSecretRequest(name="ONE", value="v"))
        after = await backend.master_key_status()
    assert (after.secrets, after.matches, after.problem) == (1, True, "")
    assert after.key_id == after.database_key_id == key_in(home).key_id.hex()
    assert stored(database)[""].hex() == after.database_key_id


async def test_rotation_reseals_every_secret_and_moves_the_key_file(database, home):
    async with PostgresBackend(database, master_key=file_source(home)) as backend:
        await put_all(backend)
        old_key, before = key_in(home), stored(database)
        rotation = await backend.rotate_master_key()
        status = await backend.master_key_status()
    new_key, after = key_in(home), stored(database)
    assert rotation.secrets == len(NAMES) and rotation.old_key_id == old_key.key_id.hex()
    assert new_key.key_id.hex() == rotation.new_key.key_id.hex() != old_key.key_id.hex()
    assert after[""] == new_key.key_id and before[""] == old_key.key_id
    for name in NAMES:
        assert after[name] != before[name]
        assert unseal(new_key, name, after[name], version=1) == f"value of {name}"
    assert status.matches is True and status.key_id == new_key.key_id.hex()
    assert not list(home.glob("*.new*")), "the staged key is gone once promoted"


async def test_a_replica_still_on_the_old_key_is_refused_after_a_rotation(database, home, tmp_path):
    other = tmp_path / "other-replica"
    other.mkdir(mode=0o700)
    async with PostgresBackend(database, master_key=file_source(home)) as first:
        await put_all(first)
        (other / "master.key").write_text((home / "master.key").read_text())
        (other / "master.key").chmod(0o600)
        async with PostgresBackend(database, master_key=file_source(other)) as second:
            assert (await second.master_key_status()).matches is True
            await first.rotate_master_key()
            error = await failure(second.put_secret(pb.PutSecretRequest(name="LATE", value="v")))
            status = await second.master_key_status()
    assert error.status == Status.INTERNAL and "does not match" in error.message
    assert status.matches is False and "does not match" in status.problem


async def test_a_rotation_that_fails_mid_write_changes_nothing(database, home):
    """One transaction: a failure while re-sealing leaves every value and the key as they were."""
    async with PostgresBackend(database, master_key=file_source(home)) as backend:
        await put_all(backend)
        old_key, before = key_in(home), stored(database)
        with psycopg.connect(database, autocommit=True) as admin:  # the last value's update fails
            admin.execute(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk full, say'; END $$"
            )
            admin.execute(
                "CREATE TRIGGER refuse_gamma BEFORE UPDATE ON secrets FOR EACH ROW "
                "WHEN (OLD.name = 'GAMMA') EXECUTE FUNCTION refuse()"
            )
        error = await failure(backend.rotate_master_key())
        assert error.status == Status.INTERNAL and "disk full, say" in error.message
        assert stored(database) == before and key_in(home).key_id == old_key.key_id
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("DROP TRIGGER refuse_gamma ON secrets")
        status = await backend.master_key_status()
        assert status.matches is True and status.key_id == old_key.key_id.hex()
        assert (await backend.rotate_master_key()).secrets == len(NAMES), "and a later rotation succeeds"


async def test_a_value_that_does_not_open_stops_the_rotation_before_anything_is_written(database, home):
    async with PostgresBackend(database, master_key=file_source(home)) as backend:
        await put_all(backend)
        with psycopg.connect(database, autocommit=True) as admin:  # BETA's ciphertext under ALPHA's name binding
            admin.execute("UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'ALPHA') "
                          "WHERE name = 'BETA'")  # fmt: skip
        before, old_key = stored(database), key_in(home)
        error = await failure(backend.rotate_master_key())
    assert error.status == Status.INTERNAL and error.message.endswith("nothing was rotated")
    assert stored(database) == before and key_in(home).key_id == old_key.key_id


async def test_rotating_a_key_from_the_environment_needs_the_new_key_given(database):
    old_text = base64.b64encode(os.urandom(32)).decode()
    source = MasterKeySource(environ={"STIGMER_MASTER_KEY": old_text}, keychain=None)
    async with PostgresBackend(database, master_key=source) as backend:
        await put_all(backend)
        error = await failure(backend.rotate_master_key())
        assert error.status == Status.FAILED_PRECONDITION and "STIGMER_NEW_MASTER_KEY" in error.message
        new_key = MasterKey.generate("test")
        rotation = await backend.rotate_master_key(new_key)
    assert rotation.secrets == len(NAMES) and not rotation.store.writable
    after = stored(database)
    assert after[""] == new_key.key_id
    assert unseal(new_key, "ALPHA", after["ALPHA"], version=1) == "value of ALPHA"


def test_the_cli_key_commands_on_a_postgresql_context(database, home):
    """``stigmer secret status``/``rotate-key`` through the CLI's backend registry, with a postgresql:// context."""
    (home / "config.json").write_text(json.dumps({"kind": "postgresql", "url": database}))
    env = isolated_env(home)

    def stigmer(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [STIGMER, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    assert stigmer("secret", "put", "TOKEN", stdin="t0ps3cret\n").returncode == 0
    status = json.loads(stigmer("secret", "status", "-o", "json").stdout)
    assert status["database"].startswith(f"database {urlsplit(database).path[1:]} on ") and status["matches"] is True
    assert status["place"] == str(home / "master.key")
    rotated = stigmer("secret", "rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    assert f"re-encrypted 1 secret(s) under a new master key (key id {key_in(home).key_id.hex()}" in rotated.stderr
    assert "t0ps3cret" not in rotated.stderr + rotated.stdout
    assert unseal(key_in(home), "TOKEN", stored(database)["TOKEN"], version=1) == "t0ps3cret"


def test_the_server_takes_its_backend_from_the_registry_and_refuses_what_it_does_not_know(home):
    env = isolated_env(home)

    def server(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [STIGMER, "server", "--port", "0", *args], env=env, capture_output=True, text=True, timeout=60
        )

    unknown = server("--backend", "mysql://db.internal/stigmer")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert unknown.stderr == ("Error: FAILED_PRECONDITION: unknown backend kind 'mysql' (known: postgresql, sqlite)\n")
    pool = server("--pool-size", "3")
    assert pool.returncode == 2 and "--pool-size is for a database server given with --backend" in pool.stderr
