"""Secrets in the SQLite file: the ``secrets`` and ``secret_key_check`` tables.

Only sealed values (see ``stigmer_backend.backends.encryption``) are ever bound to a
statement, so no page of the database or its write-ahead log holds a value
in plain text. Which master key seals them, when one is created and how a
rotation proceeds is ``MasterKeyPolicy``'s decision; this module maps its
``SealedSecretStorage`` onto the two tables. Every method runs on a
connection inside a transaction the backend owns, so the check and the values
it reads or writes agree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..encryption import KeyCheck, KeyRotation, KeyStatus, MasterKey, MasterKeyPolicy, MasterKeySource
from ..rules import errors
from . import _rows

__all__ = ["SecretVault"]

_SECRET_SELECT = "SELECT name, version, create_us, update_us FROM secrets"


class _SecretTables:
    """``SealedSecretStorage`` on one connection, inside the caller's transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def key_check(self) -> KeyCheck | None:
        row = self._conn.execute("SELECT key_id, check_value FROM secret_key_check WHERE id = 1").fetchone()
        return None if row is None else KeyCheck(bytes(row["key_id"]), bytes(row["check_value"]))

    def record_key_check(self, check: KeyCheck) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO secret_key_check (id, key_id, check_value) VALUES (1, ?, ?)",
            (check.key_id, check.value),
        )

    def clear_key_check(self) -> None:
        self._conn.execute("DELETE FROM secret_key_check")

    def secret_count(self) -> int:
        count: int = self._conn.execute("SELECT count(*) FROM secrets").fetchone()[0]
        return count

    def sealed_values(self) -> list[tuple[str, int, bytes]]:
        rows = self._conn.execute("SELECT name, version, ciphertext FROM secrets ORDER BY name").fetchall()
        # Unconverted: a ciphertext altered into TEXT must reach unseal's "database was altered" check.
        return [(row["name"], row["version"], row["ciphertext"]) for row in rows]

    def replace_sealed_values(self, sealed: Sequence[tuple[str, bytes]]) -> None:
        self._conn.executemany("UPDATE secrets SET ciphertext = ? WHERE name = ?", [(c, n) for n, c in sealed])


class SecretVault:
    """The secret tables of one database, and the master key that opens them.

    :param path: the database file, named in errors.
    :param source: where the master key is looked for (and created).
    """

    def __init__(self, path: Path, source: MasterKeySource) -> None:
        self._keys = MasterKeyPolicy(str(path), source)

    # -- the RPCs ---------------------------------------------------------------------------------

    def put(self, conn: sqlite3.Connection, name: str, value: str, now: datetime) -> pb.PutSecretResponse:
        """Stores ``value`` sealed under the database's key (binding a key on the first put)."""
        row = conn.execute(f"{_SECRET_SELECT} WHERE name = ?", (name,)).fetchone()
        sealed = self._keys.seal_for_put(_SecretTables(conn), name, value, 1 if row is None else row["version"] + 1)
        stamp = _rows.micros(now)
        if row is None:
            conn.execute(
                "INSERT INTO secrets (name, version, create_us, update_us, ciphertext) VALUES (?, 1, ?, ?, ?)",
                (name, stamp, stamp, sealed),
            )
            secret = pb.Secret(name=name, version=1, create_time=now, update_time=now)
        else:
            conn.execute(
                "UPDATE secrets SET version = version + 1, update_us = ?, ciphertext = ? WHERE name = ?",
                (stamp, sealed, name),
            )
            secret = pb.Secret(
                name=name, version=row["version"] + 1, create_time=_rows.timestamp(row["create_us"]), update_time=now
            )
        return pb.PutSecretResponse(secret=secret, created=row is None)

    def page(self, conn: sqlite3.Connection, after: str | None, size: int) -> list[pb.Secret]:
        """Up to ``size`` secrets' metadata, by name, after ``after``; never reads a value."""
        sql, params = _SECRET_SELECT, []
        if after is not None:
            sql += " WHERE name > ?"
            params.append(after)
        rows = conn.execute(f"{sql} ORDER BY name LIMIT ?", (*params, size)).fetchall()
        return [
            pb.Secret(
                name=row["name"],
                version=row["version"],
                create_time=_rows.timestamp(row["create_us"]),
                update_time=_rows.timestamp(row["update_us"]),
            )
            for row in rows
        ]

    def delete(self, conn: sqlite3.Connection, name: str) -> None:
        """Deletes one secret (``NOT_FOUND`` if absent); the last one takes the key check with it."""
        if conn.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount == 0:
            raise errors.not_found(f"secret {name!r}")
        self._keys.after_delete(_SecretTables(conn))

    def values(self, conn: sqlite3.Connection, names: list[str]) -> dict[str, str]:
        """The values of those of ``names`` that exist, decrypted; no other row is read."""
        if not names:
            return {}
        rows = conn.execute(
            f"SELECT name, version, ciphertext FROM secrets WHERE name IN ({', '.join('?' * len(names))})", names
        ).fetchall()
        return self._keys.open(_SecretTables(conn), [(row["name"], row["version"], row["ciphertext"]) for row in rows])

    # -- rotation and status ----------------------------------------------------------------------

    def rotate(self, conn: sqlite3.Connection, new_key: MasterKey | None) -> KeyRotation:
        """Re-seals every secret under a new key; call inside one write transaction (see ``MasterKeyPolicy``)."""
        return self._keys.rotate(_SecretTables(conn), new_key)

    def promote(self, rotation: KeyRotation) -> None:
        """After the rotation committed: the new key becomes the store's key."""
        self._keys.promote(rotation)

    def status(self, conn: sqlite3.Connection) -> KeyStatus:
        """Where the key is and whether it opens this database; never creates a key."""
        return self._keys.status(_SecretTables(conn))
