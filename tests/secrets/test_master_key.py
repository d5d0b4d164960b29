"""Where the master key comes from, how the key file is guarded, and when a key may be created."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.encryption import MasterKey, MasterKeyError, MasterKeySource
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from .workload import (
    agent_spec,
    apply_agent,
    context_of,
    file_source,
    put,
    random_key_text,
    running_execution,
    values_of,
)

VALUE = "pa55-w0rd-for-the-test"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_key_file(path: Path, text: str, file_mode: int = 0o600) -> None:
    path.write_text(text + "\n")
    path.chmod(file_mode)


# -- resolution order ---------------------------------------------------------------------------


def test_the_environment_variable_comes_before_the_key_file(home: Path) -> None:
    file_key, env_key = random_key_text(), random_key_text()
    write_key_file(home / "master.key", file_key)
    found, store = file_source(home, {"STIGMER_MASTER_KEY": env_key}).find()
    assert found.same_key(MasterKey.from_text(env_key, "x"))
    assert found.place == store.place == "the STIGMER_MASTER_KEY environment variable"
    found, store = file_source(home).find()
    assert found.same_key(MasterKey.from_text(file_key, "x"))
    assert found.place == str(home / "master.key")


def test_nothing_found_is_none_and_says_where_it_looked(home: Path) -> None:
    source = file_source(home)
    assert source.find() is None
    searched = source.searched()
    assert "STIGMER_MASTER_KEY is not set" in searched
    assert "the OS keychain is not used here" in searched
    assert f"{home / 'master.key'} does not exist" in searched


def test_a_malformed_environment_key_is_an_error_not_a_fallback(home: Path) -> None:
    write_key_file(home / "master.key", random_key_text())
    with pytest.raises(MasterKeyError, match="the STIGMER_MASTER_KEY environment variable is malformed"):
        file_source(home, {"STIGMER_MASTER_KEY": "too-short"}).find()


def test_the_default_source_reads_stigmer_home_and_the_process_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = random_key_text()
    monkeypatch.setenv("STIGMER_MASTER_KEY", key)
    found, _ = MasterKeySource(keychain=None).find()
    assert found.to_text() == key
    monkeypatch.delenv("STIGMER_MASTER_KEY")
    write_key_file(home / "master.key", key)
    found, store = MasterKeySource(keychain=None).find()
    assert store.place == str(home.resolve() / "master.key")


# -- the key file ---------------------------------------------------------------------------------


async def test_the_first_put_creates_a_private_key_file(home: Path, backend: SqliteBackend) -> None:
    assert not (home / "master.key").exists()
    await put(backend, "A", VALUE)
    key_file = home / "master.key"
    assert mode(key_file) == 0o600
    assert mode(home) == 0o700
    key = MasterKey.from_text(key_file.read_text(), "file")
    status = await backend.master_key_status()
    assert (status.place, status.key_id, status.database_key_id) == (str(key_file), key.key_id.hex(), key.key_id.hex())
    assert status.matches is True
    assert VALUE not in key_file.read_text()


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o620, 0o660])
async def test_a_key_file_others_can_access_is_refused(home: Path, file_mode: int) -> None:
    key_file = home / "master.key"
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
    key_file.chmod(file_mode)
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        with pytest.raises(GRPCError) as caught:
            await values_of(db, ["A"])
        assert caught.value.status == Status.INTERNAL
        assert caught.value.message == (
            f"the key file {key_file} is accessible by group or others (mode {file_mode:04o}); "
            f"refusing to use it: run `chmod 600 {key_file}`"
        )
        with pytest.raises(GRPCError, match="accessible by group or others"):
            await put(db, "B", VALUE)
        assert (await db.master_key_status()).problem.startswith(f"the key file {key_file} is accessible")
        key_file.chmod(0o600)
        assert await values_of(db, ["A"]) == {"A": VALUE}


async def test_a_symlinked_or_foreign_key_file_is_refused(home: Path, tmp_path: Path) -> None:
    key_file = home / "master.key"
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
    real = tmp_path / "elsewhere.key"
    key_file.rename(real)
    key_file.symlink_to(real)
    with pytest.raises(MasterKeyError, match="is a symbolic link"):
        file_source(home).find()
    key_file.unlink()
    real.rename(key_file)
    if os.geteuid() == 0:  # only root can give a file away
        os.chown(key_file, 65534, -1)
        with pytest.raises(MasterKeyError, match=r"belongs to another user \(uid 65534\)"):
            file_source(home).find()


async def test_no_key_file_is_written_into_a_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    async with SqliteBackend(shared / "local.db", master_key=file_source(shared)) as db:
        with pytest.raises(GRPCError) as caught:
            await put(db, "A", VALUE)
        assert caught.value.status == Status.INTERNAL
        assert f"{shared} is accessible by group or others (mode 0755)" in caught.value.message
        assert not (shared / "master.key").exists()
        assert (await db.list_secrets(pb.ListSecretsRequest())).secrets == []


# -- never a new key while ciphertext exists --------------------------------------------------------


async def test_no_key_is_generated_while_ciphertext_exists(home: Path) -> None:
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
    (home / "master.key").unlink()
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        for attempt in (put(db, "B", "another value"), values_of(db, ["A"])):
            with pytest.raises(GRPCError) as caught:
                await attempt
            assert caught.value.status == Status.INTERNAL
            assert caught.value.message.startswith(
                f"no master key found for {home / 'local.db'}, which holds encrypted secrets"
            )
            assert "restore the key they were sealed under" in caught.value.message
        assert not (home / "master.key").exists()
        listed = await db.list_secrets(pb.ListSecretsRequest())
        assert [secret.name for secret in listed.secrets] == ["A"]
        status = await db.master_key_status()
        assert (status.matches, status.secrets, status.place) == (False, 1, "")
        assert "the stored secrets cannot be opened" in status.problem


async def test_deleting_the_last_secret_releases_the_key_binding(home: Path) -> None:
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
        first = (await db.master_key_status()).key_id
        await db.delete_secret(pb.DeleteSecretRequest(name="A"))
        assert (await db.master_key_status()).database_key_id == ""
    (home / "master.key").unlink()
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", "new value")
        status = await db.master_key_status()
        assert status.matches is True and status.key_id != first
        assert await values_of(db, ["A"]) == {"A": "new value"}


async def test_a_wrong_key_is_refused_with_its_place(home: Path) -> None:
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
        right = (await db.master_key_status()).key_id
    write_key_file(home / "master.key", random_key_text())
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        for attempt in (values_of(db, ["A"]), put(db, "B", VALUE), db.rotate_master_key()):
            with pytest.raises(GRPCError) as caught:
                await attempt
            assert caught.value.status == Status.INTERNAL
            assert caught.value.message.startswith(
                f"the master key in {home / 'master.key'} does not match this database ({home / 'local.db'})"
            )
            assert f"sealed under key id {right}" in caught.value.message
        names = [secret.name for secret in (await db.list_secrets(pb.ListSecretsRequest())).secrets]
        assert names == ["A"]
    wrong_env = {"STIGMER_MASTER_KEY": random_key_text()}
    async with SqliteBackend(home / "local.db", master_key=file_source(home, wrong_env)) as db:
        with pytest.raises(GRPCError, match="the master key in the STIGMER_MASTER_KEY environment variable does not"):
            await values_of(db, ["A"])


async def test_without_any_key_everything_but_secrets_works(home: Path, backend: SqliteBackend) -> None:
    info = await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert set(info.capabilities) == {pb.Capability.DURABLE_STORAGE, pb.Capability.SECRETS}
    await apply_agent(backend, "local-model", agent_spec(env={"MODE": "fast"}))
    context = await context_of(backend, await running_execution(backend, "local-model"))
    assert context.environment == {"MODE": "fast"} and context.secrets == {}
    with pytest.raises(GRPCError) as caught:
        await values_of(backend, ["MISSING"])
    assert caught.value.status == Status.FAILED_PRECONDITION
    assert "MISSING" in caught.value.message
    assert not (home / "master.key").exists()
    status = await backend.master_key_status()
    assert (status.place, status.problem, status.new_key_place) == ("", "", str(home / "master.key"))


# -- rotation ---------------------------------------------------------------------------------------


async def test_rotation_re_encrypts_every_secret_and_replaces_the_key_file(home: Path) -> None:
    values = {f"SECRET_{index}": f"value-{index}-{os.urandom(4).hex()}" for index in range(12)}
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        for name, value in values.items():
            await put(db, name, value)
        before = (await db.master_key_status()).key_id
        old_text = (home / "master.key").read_text()
        rotation = await db.rotate_master_key()
        assert rotation.secrets == 12 and rotation.old_key_id == before
        assert await values_of(db, list(values)) == values
    assert (home / "master.key").read_text() != old_text
    assert mode(home / "master.key") == 0o600
    assert not (home / "master.key.next").exists()
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        status = await db.master_key_status()
        assert status.matches is True and status.key_id == rotation.new_key.key_id.hex() != before
        assert await values_of(db, list(values)) == values
        versions = {secret.name: secret.version for secret in (await db.list_secrets(pb.ListSecretsRequest())).secrets}
        assert set(versions.values()) == {1}  # a rotation is not a put
    write_key_file(home / "master.key", old_text.strip())
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        with pytest.raises(GRPCError, match="does not match this database"):
            await values_of(db, ["SECRET_0"])


async def test_a_rotation_interrupted_after_its_commit_is_finished_on_next_use(home: Path) -> None:
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
        with db._write() as conn:  # the rotation's transaction, then a crash before the key is promoted
            rotation = db._vault.rotate(conn, None)
    assert (home / "master.key.next").exists()
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        assert await values_of(db, ["A"]) == {"A": VALUE}
    assert not (home / "master.key.next").exists()
    assert MasterKey.from_text((home / "master.key").read_text(), "file").same_key(rotation.new_key)


async def test_a_failing_value_aborts_the_rotation_untouched(home: Path) -> None:
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
        await put(db, "A", VALUE)
        await put(db, "B", VALUE + "-b")
        db._db.execute(
            "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'A') WHERE name = 'B'"
        )
        key_before = (home / "master.key").read_text()
        rows_before = db._db.execute("SELECT name, ciphertext FROM secrets ORDER BY name").fetchall()
        with pytest.raises(GRPCError) as caught:
            await db.rotate_master_key()
        assert caught.value.status == Status.INTERNAL
        assert "secret 'B' failed its integrity check" in caught.value.message
        assert caught.value.message.endswith("nothing was rotated")
        assert db._db.execute("SELECT name, ciphertext FROM secrets ORDER BY name").fetchall() == rows_before
    assert (home / "master.key").read_text() == key_before
    assert not (home / "master.key.next").exists()


async def test_rotating_a_key_from_the_environment_needs_the_new_key(home: Path) -> None:
    old = random_key_text()
    environ = {"STIGMER_MASTER_KEY": old}
    async with SqliteBackend(home / "local.db", master_key=file_source(home, environ)) as db:
        await put(db, "A", VALUE)
        with pytest.raises(GRPCError) as caught:
            await db.rotate_master_key()
        assert caught.value.status == Status.FAILED_PRECONDITION
        assert "set STIGMER_NEW_MASTER_KEY to the new key" in caught.value.message
        new = MasterKey.from_text(random_key_text(), "the STIGMER_NEW_MASTER_KEY environment variable")
        rotation = await db.rotate_master_key(new)
        assert rotation.secrets == 1 and not rotation.store.writable
    assert not (home / "master.key").exists()
    environ["STIGMER_MASTER_KEY"] = new.to_text()
    async with SqliteBackend(home / "local.db", master_key=file_source(home, environ)) as db:
        assert await values_of(db, ["A"]) == {"A": VALUE}


async def test_rotating_without_any_key_is_a_clear_refusal(backend: SqliteBackend) -> None:
    with pytest.raises(GRPCError) as caught:
        await backend.rotate_master_key()
    assert caught.value.status == Status.FAILED_PRECONDITION
    assert "there is no master key to rotate yet" in caught.value.message
