"""Secrets in the SQLite file: sealed values, the key check, and key rotation.

Only sealed values (see ``stigmer.backends.encryption``) are ever bound to a
statement, so no page of the database or its write-ahead log holds a value
in plain text. The ``secret_key_check`` row records the master key the
values are sealed under; it exists exactly while at least one secret does,
so the first put binds a key and a key is generated only when no ciphertext
exists. Every method runs on a connection inside a transaction the backend
owns, so the check and the values it reads or writes agree.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from grpclib import GRPCError
from grpclib.const import Status

from stigmer.gen.stigmer.backend import v1 as pb

from ..encryption import (
    NEW_KEY_ENV_VAR,
    KeyCheck,
    KeyLookupFailed,
    KeyStore,
    MasterKey,
    MasterKeyError,
    MasterKeySource,
    SealedValueError,
    reseal,
    seal,
    unseal,
)
from ..rules import errors
from . import _rows

__all__ = ["KeyRotation", "KeyStatus", "SecretVault"]

_SECRET_SELECT = "SELECT name, version, create_us, update_us FROM secrets"


@dataclass(frozen=True)
class KeyStatus:
    """What ``stigmer secret status`` reports about a database and its master key.

    :param database: the database file.
    :param secrets: how many secrets it stores.
    :param place: where the key was found; "" if none was.
    :param key_id: hex id of the key found; "" if none was.
    :param database_key_id: hex id of the key the secrets are sealed under; "" without secrets.
    :param matches: whether the key found opens the secrets; None when there are no secrets.
    :param problem: why no usable key was found, or what is wrong with it; "" if nothing is.
    :param new_key_place: where the first put will create a key, when there is none yet; else "".
    """

    database: str
    secrets: int
    place: str
    key_id: str
    database_key_id: str
    matches: bool | None
    problem: str
    new_key_place: str


@dataclass(frozen=True)
class KeyRotation:
    """A rotation committed to the database, whose new key is still to be promoted.

    :param secrets: how many secrets were re-encrypted.
    :param old_key_id: hex id of the replaced key.
    :param new_key: the new key, at its final place.
    :param store: where the new key goes (its staged copy is there already).
    """

    secrets: int
    old_key_id: str
    new_key: MasterKey
    store: KeyStore


class SecretVault:
    """The secret tables of one database, and the master key that opens them.

    :param path: the database file, named in errors.
    :param source: where the master key is looked for (and created).

    The key is looked up on first need and kept; each use compares it with
    the stored check, so a rotation by another process is noticed and the
    key looked up again.
    """

    def __init__(self, path: Path, source: MasterKeySource) -> None:
        self._path = path
        self._source = source
        self._key: MasterKey | None = None
        self._store: KeyStore | None = None

    # -- the master key ---------------------------------------------------------------------------

    @staticmethod
    def _check(conn: sqlite3.Connection) -> KeyCheck | None:
        row = conn.execute("SELECT key_id, check_value FROM secret_key_check WHERE id = 1").fetchone()
        return None if row is None else KeyCheck(bytes(row["key_id"]), bytes(row["check_value"]))

    @staticmethod
    def _count(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT count(*) FROM secrets").fetchone()[0]

    def _find(self, check: KeyCheck | None) -> tuple[MasterKey, KeyStore] | None:
        try:
            return self._source.find(check)
        except KeyLookupFailed as error:
            raise GRPCError(Status.UNAVAILABLE, str(error)) from None
        except MasterKeyError as error:
            raise GRPCError(Status.INTERNAL, str(error)) from None

    def _mismatch(self, key: MasterKey, check: KeyCheck) -> GRPCError:
        return GRPCError(
            Status.INTERNAL,
            f"the master key in {key.place} does not match this database ({self._path}): its secrets are sealed "
            f"under key id {check.key_id.hex()}, this key's id is {key.key_id.hex()}",
        )

    def key(self, conn: sqlite3.Connection, *, create: bool) -> MasterKey:
        """The key the stored secrets are sealed under, looked up if needed.

        :param create: whether a new key may be generated, which happens
            only if no place holds a key and the database holds no
            ciphertext (so nothing can become unreadable).

        Raises ``GRPCError``: ``INTERNAL`` for a key that does not match the
        database, a missing key while secrets exist, or a key that must not
        be used; ``UNAVAILABLE`` if a keychain did not answer.
        """
        check = self._check(conn)
        if self._key is not None and (check is None or self._key.matches(check)):
            return self._key
        found = self._find(check)
        if found is None:
            if check is not None or self._count(conn):
                raise GRPCError(
                    Status.INTERNAL,
                    f"no master key found for {self._path}, which holds encrypted secrets "
                    f"({self._source.searched()}); restore the key they were sealed under",
                )
            if not create:
                raise GRPCError(Status.FAILED_PRECONDITION, "there is no master key yet")
            try:
                found = self._source.create()
            except MasterKeyError as error:
                raise GRPCError(Status.INTERNAL, f"cannot create a master key: {error}") from None
        key, store = found
        if check is not None and not key.matches(check):
            raise self._mismatch(key, check)
        self._key, self._store = key, store
        return key

    def _open(self, key: MasterKey, name: str, sealed: bytes, version: int) -> str:
        try:
            return unseal(key, name, sealed, version=version)
        except SealedValueError as error:
            raise GRPCError(Status.INTERNAL, f"{self._path}: {error}") from None

    # -- the RPCs ---------------------------------------------------------------------------------

    def put(self, conn: sqlite3.Connection, name: str, value: str, now: datetime) -> pb.PutSecretResponse:
        """Stores ``value`` sealed under the database's key (binding a key on the first put)."""
        key = self.key(conn, create=True)
        if self._check(conn) is None:
            conn.execute(
                "INSERT INTO secret_key_check (id, key_id, check_value) VALUES (1, ?, ?)",
                (key.check.key_id, key.check.value),
            )
        row = conn.execute(f"{_SECRET_SELECT} WHERE name = ?", (name,)).fetchone()
        sealed = seal(key, name, value, version=1 if row is None else row["version"] + 1)
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
        if not self._count(conn):
            conn.execute("DELETE FROM secret_key_check")

    def values(self, conn: sqlite3.Connection, names: list[str]) -> dict[str, str]:
        """The values of those of ``names`` that exist, decrypted; no other row is read."""
        if not names:
            return {}
        rows = conn.execute(
            f"SELECT name, version, ciphertext FROM secrets WHERE name IN ({', '.join('?' * len(names))})", names
        ).fetchall()
        if not rows:
            return {}
        key = self.key(conn, create=False)
        return {row["name"]: self._open(key, row["name"], row["ciphertext"], row["version"]) for row in rows}

    # -- rotation and status ----------------------------------------------------------------------

    def rotate(self, conn: sqlite3.Connection, new_key: MasterKey | None) -> KeyRotation:
        """Re-seals every secret under a new key; call inside one write transaction.

        :param new_key: the key to move to; default a new random one. Needed
            when the current key comes from ``STIGMER_MASTER_KEY``, which
            Stigmer cannot change.

        Every value is opened before anything is written, so a value that
        fails leaves the database as it was. The new key is staged in the
        current key's store before the caller commits; ``promote`` finishes.
        """
        check = self._check(conn)
        rows = conn.execute("SELECT name, version, ciphertext FROM secrets ORDER BY name").fetchall()
        if check is None and not rows:
            found = self._find(None)
            if found is None:
                raise errors.failed_precondition(
                    "there is no master key to rotate yet: the first `stigmer secret put` creates one"
                )
            old, store = found
        else:
            old = self.key(conn, create=False)
            store = self._store
            assert store is not None  # set by key()
        if new_key is None:
            if not store.writable:
                raise errors.failed_precondition(
                    f"the master key comes from {store.place}, where Stigmer cannot store a new one: set "
                    f"{NEW_KEY_ENV_VAR} to the new key (base64 of 32 bytes, e.g. `openssl rand -base64 32`) "
                    "and rotate again"
                )
            new_key = MasterKey.generate(store.place)
        elif store.writable:
            new_key = new_key.at(store.place)
        if new_key.same_key(old):
            raise errors.failed_precondition("the new master key is the current one")
        resealed = []
        for row in rows:
            try:
                resealed.append(
                    (reseal(old, new_key, row["name"], row["ciphertext"], version=row["version"]), row["name"])
                )
            except SealedValueError as error:
                raise GRPCError(Status.INTERNAL, f"{self._path}: {error}; nothing was rotated") from None
        if store.writable:
            try:
                store.stage(new_key.to_text())
            except MasterKeyError as error:
                raise GRPCError(Status.INTERNAL, f"{error}; nothing was rotated") from None
        conn.executemany("UPDATE secrets SET ciphertext = ? WHERE name = ?", resealed)
        if rows:
            conn.execute(
                "INSERT OR REPLACE INTO secret_key_check (id, key_id, check_value) VALUES (1, ?, ?)",
                (new_key.check.key_id, new_key.check.value),
            )
        return KeyRotation(secrets=len(rows), old_key_id=old.key_id.hex(), new_key=new_key, store=store)

    def promote(self, rotation: KeyRotation) -> None:
        """After the rotation committed: the new key becomes the store's key."""
        self._key, self._store = rotation.new_key, rotation.store
        if not rotation.store.writable:
            return
        try:
            rotation.store.save(rotation.new_key.to_text())
            rotation.store.discard_staged()
        except MasterKeyError as error:
            self._key = rotation.new_key.at(rotation.store.staged_place)
            raise GRPCError(
                Status.INTERNAL,
                f"the secrets were re-encrypted under the new master key, but {error}; the new key is kept in "
                f"{rotation.store.staged_place}, from where Stigmer will use it",
            ) from None

    def status(self, conn: sqlite3.Connection) -> KeyStatus:
        """Where the key is and whether it opens this database; never creates a key."""
        check = self._check(conn)
        count = self._count(conn)
        place = key_id = problem = ""
        matches: bool | None = None
        try:
            found = self._source.find(check)
        except MasterKeyError as error:  # includes KeyLookupFailed
            found, problem = None, str(error)
        if found is not None:
            key, _ = found
            place, key_id = key.place, key.key_id.hex()
            if check is not None:
                matches = key.matches(check)
                if not matches:
                    problem = str(self._mismatch(key, check).message)
        elif check is not None or count:
            matches = False
            problem = problem or f"no master key found ({self._source.searched()}); the stored secrets cannot be opened"
        return KeyStatus(
            database=str(self._path),
            secrets=count,
            place=place,
            key_id=key_id,
            database_key_id="" if check is None else check.key_id.hex(),
            matches=matches,
            problem=problem,
            new_key_place="" if found is not None or problem else self._source.creation_place(),
        )
