"""Secrets in PostgreSQL: the ``secrets`` and ``secret_key_check`` tables.

Values are sealed by ``stigmer_backend.backends.encryption`` (the same format, bound
to name and key) before they are bound to a statement, so neither a table, a
dump nor the write-ahead log holds a value in plain text. Which master key
seals them, when one is created, how a rotation proceeds and what ``stigmer
secret status`` reports is ``MasterKeyPolicy``'s decision, as for SQLite;
this module maps its ``SealedSecretStorage`` onto the two tables.

Every replica must find the same key (``STIGMER_MASTER_KEY``, or the same
``master.key`` file): one that finds another key is refused with the place it
came from, and since a new key is created only while the database holds no
ciphertext, a replica can never seal values under a key the others lack
without being told.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..encryption import KeyCheck, KeyRotation, KeyStatus, MasterKey, MasterKeyPolicy, MasterKeySource
from ..rules import errors
from ._rows import Connection

__all__ = ["SECRETS_LOCK", "SecretVault"]

SECRETS_LOCK = 0x5374_676D_0003  # held by every secret write: the key check and the values agree
_SECRET_SELECT = "SELECT name, version, create_time, update_time FROM secrets"


class _SecretRows:
    """``SealedSecretStorage`` over rows read before the policy decides, written back after it.

    The policy is synchronous and psycopg is not, so what the policy may read
    is read first (``read``) and what it writes is kept until ``write``, both
    in the caller's transaction: one holding ``SECRETS_LOCK`` for a write, or
    one snapshot for a read, so nothing changes in between.
    """

    def __init__(self, check: KeyCheck | None, count: int, sealed: list[tuple[str, int, bytes]] | None) -> None:
        self._check = check
        self._count = count
        self._sealed = sealed
        self._check_changed = False
        self._replaced: list[tuple[str, bytes]] = []

    @classmethod
    async def read(cls, conn: Connection, *, with_values: bool = False) -> _SecretRows:
        row = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM secrets) AS count, k.key_id, k.check_value "
                "FROM (VALUES (1)) AS one (id) LEFT JOIN secret_key_check k ON k.id = one.id"
            )
        ).fetchone()
        assert row is not None  # a SELECT from VALUES (1) has one row
        check = None if row["key_id"] is None else KeyCheck(bytes(row["key_id"]), bytes(row["check_value"]))
        sealed = None
        if with_values:
            rows = await (await conn.execute("SELECT name, version, ciphertext FROM secrets ORDER BY name")).fetchall()
            sealed = [(r["name"], r["version"], bytes(r["ciphertext"])) for r in rows]
        return cls(check, row["count"], sealed)

    def key_check(self) -> KeyCheck | None:
        return self._check

    def record_key_check(self, check: KeyCheck) -> None:
        self._check, self._check_changed = check, True

    def clear_key_check(self) -> None:
        self._check, self._check_changed = None, True

    def secret_count(self) -> int:
        return self._count

    def sealed_values(self) -> list[tuple[str, int, bytes]]:
        if self._sealed is None:
            raise AssertionError("the sealed values were not read (read(..., with_values=True))")
        return list(self._sealed)

    def replace_sealed_values(self, sealed: Sequence[tuple[str, bytes]]) -> None:
        self._replaced = list(sealed)

    async def write(self, conn: Connection) -> None:
        """Writes what the policy changed, in the caller's transaction."""
        if self._check_changed:
            if self._check is None:
                await conn.execute("DELETE FROM secret_key_check")
            else:
                await conn.execute(
                    "INSERT INTO secret_key_check (id, key_id, check_value) VALUES (1, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET key_id = EXCLUDED.key_id, check_value = EXCLUDED.check_value",
                    (self._check.key_id, self._check.value),
                )
        if self._replaced:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "UPDATE secrets SET ciphertext = %s WHERE name = %s", [(c, n) for n, c in self._replaced]
                )


class SecretVault:
    """The secret tables of one database, and the master key that opens them.

    :param where: the database, as named in errors.
    :param source: where the master key is looked for (and created).
    """

    def __init__(self, where: str, source: MasterKeySource) -> None:
        self._keys = MasterKeyPolicy(where, source)

    # -- the RPCs ---------------------------------------------------------------------------------

    async def put(self, conn: Connection, name: str, value: str, now: datetime) -> pb.PutSecretResponse:
        """Stores ``value`` sealed; call inside a transaction holding ``SECRETS_LOCK``."""
        storage = await _SecretRows.read(conn)
        current = await (await conn.execute("SELECT version FROM secrets WHERE name = %s", (name,))).fetchone()
        sealed = self._keys.seal_for_put(storage, name, value, 1 if current is None else current["version"] + 1)
        await storage.write(conn)
        row = await (
            await conn.execute(
                "INSERT INTO secrets AS s (name, version, create_time, update_time, ciphertext) "
                "VALUES (%s, 1, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET version = s.version + 1, "
                "update_time = EXCLUDED.update_time, ciphertext = EXCLUDED.ciphertext "
                "RETURNING version, create_time",
                (name, now, now, sealed),
            )
        ).fetchone()
        assert row is not None  # an INSERT ... ON CONFLICT DO UPDATE returns its row
        secret = pb.Secret(name=name, version=row["version"], create_time=row["create_time"], update_time=now)
        return pb.PutSecretResponse(secret=secret, created=row["version"] == 1)

    @staticmethod
    async def page(conn: Connection, after: str | None, size: int) -> list[pb.Secret]:
        """Up to ``size`` secrets' metadata, by name, after ``after``; never reads a value."""
        where, params = ("", (size,)) if after is None else (" WHERE name > %s", (after, size))
        cursor = await conn.execute(f"{_SECRET_SELECT}{where} ORDER BY name LIMIT %s", params)
        return [
            pb.Secret(name=r["name"], version=r["version"], create_time=r["create_time"], update_time=r["update_time"])
            for r in await cursor.fetchall()
        ]

    async def delete(self, conn: Connection, name: str) -> None:
        """Deletes one secret (``NOT_FOUND`` if absent); call holding ``SECRETS_LOCK``."""
        if (await conn.execute("DELETE FROM secrets WHERE name = %s", (name,))).rowcount == 0:
            raise errors.not_found(f"secret {name!r}")
        storage = await _SecretRows.read(conn)
        self._keys.after_delete(storage)
        await storage.write(conn)

    async def values(self, conn: Connection, names: list[str]) -> dict[str, str]:
        """The values of those of ``names`` that exist, decrypted; call in one snapshot (the check and values agree)."""
        rows = await (
            await conn.execute("SELECT name, version, ciphertext FROM secrets WHERE name = ANY(%s)", (names,))
        ).fetchall()
        if not rows:
            return {}
        storage = await _SecretRows.read(conn)
        return self._keys.open(storage, [(row["name"], row["version"], bytes(row["ciphertext"])) for row in rows])

    # -- rotation and status ----------------------------------------------------------------------

    async def rotate(self, conn: Connection, new_key: MasterKey | None) -> KeyRotation:
        """Re-seals every secret under a new key; call in a transaction holding ``SECRETS_LOCK``, then ``promote``."""
        storage = await _SecretRows.read(conn, with_values=True)
        rotation = self._keys.rotate(storage, new_key)
        await storage.write(conn)
        return rotation

    def promote(self, rotation: KeyRotation) -> None:
        """After the rotation committed: the new key becomes the store's key."""
        self._keys.promote(rotation)

    async def status(self, conn: Connection) -> KeyStatus:
        """Where the key is and whether it opens this database; never creates a key."""
        return self._keys.status(await _SecretRows.read(conn))
