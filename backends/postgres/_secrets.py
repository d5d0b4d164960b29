"""Secrets in PostgreSQL: sealed values and the key check, as in the SQLite file.

Values are sealed by ``stigmer.backends.encryption`` (the same format, bound
to name and key) before they are bound to a statement, so neither a table, a
dump nor the write-ahead log holds a value in plain text. The
``secret_key_check`` row records the master key the values are sealed under;
it exists exactly while a secret does. Every replica must find the same key
(``STIGMER_MASTER_KEY``, or the same ``master.key`` file): one that finds
another key is refused with the place it came from, and since a new key is
created only while the database holds no ciphertext, a replica can never
seal values under a key the others lack without being told.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from grpclib import GRPCError
from grpclib.const import Status

from stigmer.gen.stigmer.backend import v1 as pb

from ..encryption import (
    KeyCheck,
    KeyLookupFailed,
    MasterKey,
    MasterKeyError,
    MasterKeySource,
    SealedValueError,
    seal,
    unseal,
)
from ..rules import errors

__all__ = ["SECRETS_LOCK", "SecretVault"]

SECRETS_LOCK = 0x5374_676D_0003  # held by every secret write: the key check and the values agree
_SECRET_SELECT = "SELECT name, version, create_time, update_time FROM secrets"


class SecretVault:
    """The secret tables of one database, and the master key that opens them.

    :param where: the database, as named in errors.
    :param source: where the master key is looked for (and created).
    """

    def __init__(self, where: str, source: MasterKeySource) -> None:
        self._where = where
        self._source = source
        self._key: MasterKey | None = None

    @staticmethod
    async def _check(conn: psycopg.AsyncConnection) -> KeyCheck | None:
        row = await (await conn.execute("SELECT key_id, check_value FROM secret_key_check WHERE id = 1")).fetchone()
        return None if row is None else KeyCheck(bytes(row["key_id"]), bytes(row["check_value"]))

    async def key(self, conn: psycopg.AsyncConnection, *, create: bool) -> MasterKey:
        """The key the stored secrets are sealed under, looked up (or, if allowed and safe, created) if needed."""
        # TODO(issue17): use the storage-neutral master-key policy from backends.encryption once it moves
        # there; this is the SQLite adapter's lookup without rotation, over this adapter's key-check row.
        check = await self._check(conn)
        if self._key is not None and (check is None or self._key.matches(check)):
            return self._key
        try:
            found = self._source.find(check)
        except KeyLookupFailed as error:
            raise GRPCError(Status.UNAVAILABLE, str(error)) from None
        except MasterKeyError as error:
            raise GRPCError(Status.INTERNAL, str(error)) from None
        if found is None:
            if check is not None:
                raise GRPCError(
                    Status.INTERNAL,
                    f"no master key found for {self._where}, which holds encrypted secrets "
                    f"({self._source.searched()}); give every replica the key they were sealed under",
                )
            if not create:
                raise GRPCError(Status.FAILED_PRECONDITION, "there is no master key yet")
            try:
                found = self._source.create()
            except MasterKeyError as error:
                raise GRPCError(Status.INTERNAL, f"cannot create a master key: {error}") from None
        key, _ = found
        if check is not None and not key.matches(check):
            raise GRPCError(
                Status.INTERNAL,
                f"the master key in {key.place} does not match {self._where}: its secrets are sealed under key id "
                f"{check.key_id.hex()}, this key's id is {key.key_id.hex()}",
            )
        self._key = key
        return key

    async def put(self, conn: psycopg.AsyncConnection, name: str, value: str, now: datetime) -> pb.PutSecretResponse:
        """Stores ``value`` sealed; call inside a transaction holding ``SECRETS_LOCK``."""
        key = await self.key(conn, create=True)
        await conn.execute(
            "INSERT INTO secret_key_check (id, key_id, check_value) VALUES (1, %s, %s) ON CONFLICT (id) DO NOTHING",
            (key.check.key_id, key.check.value),
        )
        row = await (
            await conn.execute(
                "INSERT INTO secrets AS s (name, version, create_time, update_time, ciphertext) "
                "VALUES (%s, 1, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET version = s.version + 1, "
                "update_time = EXCLUDED.update_time, ciphertext = EXCLUDED.ciphertext "
                "RETURNING version, create_time",
                (name, now, now, seal(key, name, value)),
            )
        ).fetchone()
        secret = pb.Secret(name=name, version=row["version"], create_time=row["create_time"], update_time=now)
        return pb.PutSecretResponse(secret=secret, created=row["version"] == 1)

    @staticmethod
    async def page(conn: psycopg.AsyncConnection, after: str | None, size: int) -> list[pb.Secret]:
        """Up to ``size`` secrets' metadata, by name, after ``after``; never reads a value."""
        where, params = ("", (size,)) if after is None else (" WHERE name > %s", (after, size))
        cursor = await conn.execute(f"{_SECRET_SELECT}{where} ORDER BY name LIMIT %s", params)
        return [
            pb.Secret(name=r["name"], version=r["version"], create_time=r["create_time"], update_time=r["update_time"])
            for r in await cursor.fetchall()
        ]

    @staticmethod
    async def delete(conn: psycopg.AsyncConnection, name: str) -> None:
        """Deletes one secret (``NOT_FOUND`` if absent); the last one takes the key check with it."""
        if (await conn.execute("DELETE FROM secrets WHERE name = %s", (name,))).rowcount == 0:
            raise errors.not_found(f"secret {name!r}")
        await conn.execute("DELETE FROM secret_key_check WHERE NOT EXISTS (SELECT 1 FROM secrets)")

    async def values(self, conn: psycopg.AsyncConnection, names: list[str]) -> dict[str, str]:
        """The values of those of ``names`` that exist, decrypted; no other row is read."""
        rows = await (
            await conn.execute("SELECT name, ciphertext FROM secrets WHERE name = ANY(%s)", (names,))
        ).fetchall()
        if not rows:
            return {}
        key = await self.key(conn, create=False)
        opened = {}
        for row in rows:
            try:
                opened[row["name"]] = unseal(key, row["name"], bytes(row["ciphertext"]))
            except SealedValueError as error:
                raise GRPCError(Status.INTERNAL, f"{self._where}: {error}") from None
        return opened
