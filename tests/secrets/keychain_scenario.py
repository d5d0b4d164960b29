"""Run by test_keychain.py in a child process: the master key against whatever keychain that process has.

``python keychain_scenario.py MODE HOME`` prints one JSON object of what it
observed; the test asserts on it. A child process is needed because the
keychain is a property of the session: a real Secret Service runs only
inside ``dbus-run-session``, and a headless process must have none.

Modes: ``secret-service`` (an unlocked gnome-keyring), ``locked`` (a
gnome-keyring whose collection is locked), ``headless`` (no session bus).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from grpclib import GRPCError

from stigmer_backend.backends.encryption import MasterKey, MasterKeySource
from stigmer_backend.backends.keychain import KeychainUnavailable, open_keychain
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

VALUES = {"API_TOKEN": "tok-keychain-7d1e9a", "DB_PASSWORD": "pw-keychain-c3b4f2"}


async def put_all(backend: SqliteBackend) -> None:
    for name, value in VALUES.items():
        await backend.put_secret(pb.PutSecretRequest(name=name, value=value))


async def read_all(home: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The values, through a fresh backend and key source, as a later process would see them."""
    async with SqliteBackend(home / "local.db", master_key=MasterKeySource(home, environ=environ or {})) as backend:
        conn = backend._db
        conn.execute("BEGIN")
        try:
            return backend._vault.values(conn, list(VALUES))
        finally:
            conn.execute("COMMIT")


async def error_of(coroutine) -> dict[str, str]:
    try:
        await coroutine
    except GRPCError as error:
        return {"status": error.status.name, "message": error.message or ""}
    return {"status": "OK", "message": ""}


async def secret_service(home: Path) -> dict:
    keychain = open_keychain()
    account = f"master-key:{home.resolve()}"
    observed: dict = {"keychain": keychain.name}
    async with SqliteBackend(home / "local.db", master_key=MasterKeySource(home, environ={})) as backend:
        await put_all(backend)
        status = await backend.master_key_status()
    observed |= {"place": status.place, "key_id": status.key_id, "matches": status.matches}
    observed["key_file_exists"] = (home / "master.key").exists()
    stored = keychain.get(account)
    observed["stored_key_id"] = MasterKey.from_text(stored, "keychain").key_id.hex()
    observed["values_after_reopen"] = await read_all(home)

    # The keychain comes before the key file: a different key in the file is not consulted.
    decoy = base64.b64encode(os.urandom(32)).decode()
    fd = os.open(home / "master.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, decoy.encode() + b"\n")
    os.close(fd)
    observed["values_with_decoy_file"] = await read_all(home)
    # The environment variable comes before the keychain.
    observed["with_wrong_env_key"] = await error_of(read_all(home, {"STIGMER_MASTER_KEY": decoy}))

    async with SqliteBackend(home / "local.db", master_key=MasterKeySource(home, environ={})) as backend:
        rotation = await backend.rotate_master_key()
    observed["rotated_place"] = rotation.new_key.place
    observed["rotated_key_id"] = rotation.new_key.key_id.hex()
    observed["stored_key_id_after_rotation"] = MasterKey.from_text(keychain.get(account), "kc").key_id.hex()
    observed["staged_entry_after_rotation"] = keychain.get(account + ".next")
    observed["values_after_rotation"] = await read_all(home)
    observed["decoy_file_untouched"] = (home / "master.key").read_text().strip() == decoy
    keychain.delete(account)
    return observed


async def locked(home: Path) -> dict:
    observed: dict = {"keychain": open_keychain().name}
    async with SqliteBackend(home / "local.db", master_key=MasterKeySource(home, environ={})) as backend:
        observed["put"] = await error_of(put_all(backend))
        observed["listed"] = len((await backend.list_secrets(pb.ListSecretsRequest())).secrets)
    observed["key_file_exists"] = (home / "master.key").exists()
    return observed


async def headless(home: Path) -> dict:
    import keyring

    default = keyring.get_keyring()
    observed: dict = {"keyring_default": f"{type(default).__module__}.{type(default).__name__}"}
    try:
        open_keychain()
        observed["open_keychain"] = "opened"
    except KeychainUnavailable as error:
        observed["open_keychain"] = str(error)
    async with SqliteBackend(home / "local.db", master_key=MasterKeySource(home, environ={})) as backend:
        await put_all(backend)
        status = await backend.master_key_status()
    observed |= {"place": status.place, "matches": status.matches}
    observed["key_file_mode"] = oct((home / "master.key").stat().st_mode & 0o777)
    observed["values_after_reopen"] = await read_all(home)
    key_text = (home / "master.key").read_text().strip()
    # What keyring's own default backend holds for our service, and whether any file under the
    # data directory (where keyrings.alt keeps its plain-text keyring) contains the key.
    observed["default_backend_entry"] = default.get_password("stigmer", f"master-key:{home.resolve()}")
    data_home = Path(os.environ["XDG_DATA_HOME"])
    observed["key_in_data_home"] = any(
        key_text in path.read_text(errors="replace") for path in data_home.rglob("*") if path.is_file()
    )
    return observed


def main() -> None:
    mode, home = sys.argv[1], Path(sys.argv[2])
    scenario = {"secret-service": secret_service, "locked": locked, "headless": headless}[mode]
    print(json.dumps(asyncio.run(scenario(home))))


if __name__ == "__main__":
    main()
