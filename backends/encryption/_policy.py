"""The master-key policy of a backend that stores sealed secrets, whatever its storage.

Which key opens the stored secrets, when a key may be created, how a rotation
re-seals every value and moves the key, and what ``stigmer secret status``
reports: decided here once, so an adapter (SQLite, PostgreSQL, ...) only maps
``SealedSecretStorage`` onto its tables. The storage holds a ``KeyCheck`` of the
key the values are sealed under; it exists exactly while at least one secret
does, so the first put binds a key and a key is generated only when no
ciphertext exists. Every call gets a storage view bound to one transaction the
adapter owns, so the check and the values it reads or writes agree.

Errors are the contract's ``GRPCError``: ``INTERNAL`` for a key that does not
open the stored secrets (naming where it came from and the storage's
``where``), ``UNAVAILABLE`` for a keychain that did not answer,
``FAILED_PRECONDITION`` for a rotation that cannot start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from grpclib import GRPCError
from grpclib.const import Status

from ._errors import KeyLookupFailed, MasterKeyError, SealedValueError
from ._key import KeyCheck, MasterKey
from ._sealed import reseal, seal, unseal
from ._source import NEW_KEY_ENV_VAR, MasterKeySource
from ._stores import KeyStore

__all__ = ["KeyRotation", "KeyStatus", "MasterKeyAdmin", "MasterKeyPolicy", "SealedSecretStorage"]


class SealedSecretStorage(Protocol):
    """What the policy needs from a backend's storage, inside one transaction the backend owns."""

    def key_check(self) -> KeyCheck | None:
        """The check of the key the stored values are sealed under; ``None`` if none is recorded."""

    def record_key_check(self, check: KeyCheck) -> None:
        """Records ``check`` as the one key check, replacing any."""

    def clear_key_check(self) -> None:
        """Removes the key check (when the last secret is gone)."""

    def secret_count(self) -> int:
        """How many secrets are stored."""

    def sealed_values(self) -> list[tuple[str, int, bytes]]:
        """Every secret's ``(name, version, sealed value)``, by name."""

    def replace_sealed_values(self, sealed: Sequence[tuple[str, bytes]]) -> None:
        """Stores each ``(name, sealed value)`` over the secret's current value (version unchanged)."""


@dataclass(frozen=True)
class KeyStatus:
    """What ``stigmer secret status`` reports about a database and its master key.

    :param database: the database (a file, or a URL without credentials).
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


@runtime_checkable
class MasterKeyAdmin(Protocol):
    """A backend that keeps the master key of its secrets itself (``stigmer secret status`` and ``rotate-key``).

    A remote backend keeps its key on its own side, so it is not one.
    """

    async def master_key_status(self) -> KeyStatus:
        """Where the master key is and whether it opens the stored secrets; never creates a key."""

    async def rotate_master_key(self, new_key: MasterKey | None = None) -> KeyRotation:
        """Re-seals every secret under a new key (default: a random one kept where the current one is)."""


class MasterKeyPolicy:
    """The master key of one database's secrets.

    :param where: the database, as named in errors (a file path, a URL without credentials).
    :param source: where the master key is looked for (and created).

    The key is looked up on first need and kept; each use compares it with
    the stored check, so a rotation by another process is noticed and the
    key looked up again.
    """

    def __init__(self, where: str, source: MasterKeySource) -> None:
        self._where = where
        self._source = source
        self._key: MasterKey | None = None
        self._store: KeyStore | None = None

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
            f"the master key in {key.place} does not match this database ({self._where}): its secrets are sealed "
            f"under key id {check.key_id.hex()}, this key's id is {key.key_id.hex()}",
        )

    def key(self, storage: SealedSecretStorage, *, create: bool) -> MasterKey:
        """The key the stored secrets are sealed under, looked up if needed.

        :param create: whether a new key may be generated, which happens
            only if no place holds a key and the database holds no
            ciphertext (so nothing can become unreadable).

        Raises ``GRPCError``: ``INTERNAL`` for a key that does not match the
        database, a missing key while secrets exist, or a key that must not
        be used; ``UNAVAILABLE`` if a keychain did not answer.
        """
        check = storage.key_check()
        if self._key is not None and (check is None or self._key.matches(check)):
            return self._key
        found = self._find(check)
        if found is None:
            if check is not None or storage.secret_count():
                raise GRPCError(
                    Status.INTERNAL,
                    f"no master key found for {self._where}, which holds encrypted secrets "
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

    def seal_for_put(self, storage: SealedSecretStorage, name: str, value: str, version: int) -> bytes:
        """``value`` sealed for version ``version`` of the secret ``name``, binding a key on the first secret."""
        key = self.key(storage, create=True)
        if storage.key_check() is None:
            storage.record_key_check(key.check)
        return seal(key, name, value, version=version)

    def after_delete(self, storage: SealedSecretStorage) -> None:
        """The last secret takes the key check with it, so a new key may be bound again."""
        if not storage.secret_count():
            storage.clear_key_check()

    def open(self, storage: SealedSecretStorage, sealed: Sequence[tuple[str, int, bytes]]) -> dict[str, str]:
        """The values of ``sealed``: ``(name, version, sealed value)`` read in the same transaction as ``storage``."""
        if not sealed:
            return {}
        key = self.key(storage, create=False)
        values = {}
        for name, version, value in sealed:
            try:
                values[name] = unseal(key, name, value, version=version)
            except SealedValueError as error:
                raise GRPCError(Status.INTERNAL, f"{self._where}: {error}") from None
        return values

    def rotate(self, storage: SealedSecretStorage, new_key: MasterKey | None) -> KeyRotation:
        """Re-seals every secret under a new key; call inside one write transaction.

        :param new_key: the key to move to; default a new random one. Needed
            when the current key comes from ``STIGMER_MASTER_KEY``, which
            Stigmer cannot change.

        Every value is opened before anything is written, so a value that
        fails leaves the database as it was. The new key is staged in the
        current key's store before the caller commits; ``promote`` finishes.
        """
        check = storage.key_check()
        rows = storage.sealed_values()
        if check is None and not rows:
            found = self._find(None)
            if found is None:
                raise GRPCError(
                    Status.FAILED_PRECONDITION,
                    "there is no master key to rotate yet: the first `stigmer secret put` creates one",
                )
            old, store = found
        else:
            old = self.key(storage, create=False)
            assert self._store is not None  # set by key()
            store = self._store
        if new_key is None:
            if not store.writable:
                raise GRPCError(
                    Status.FAILED_PRECONDITION,
                    f"the master key comes from {store.place}, where Stigmer cannot store a new one: set "
                    f"{NEW_KEY_ENV_VAR} to the new key (base64 of 32 bytes, e.g. `openssl rand -base64 32`) "
                    "and rotate again",
                )
            new_key = MasterKey.generate(store.place)
        elif store.writable:
            new_key = new_key.at(store.place)
        if new_key.same_key(old):
            raise GRPCError(Status.FAILED_PRECONDITION, "the new master key is the current one")
        resealed = []
        for name, version, sealed in rows:
            try:
                resealed.append((name, reseal(old, new_key, name, sealed, version=version)))
            except SealedValueError as error:
                raise GRPCError(Status.INTERNAL, f"{self._where}: {error}; nothing was rotated") from None
        if store.writable:
            try:
                store.stage(new_key.to_text())
            except MasterKeyError as error:
                raise GRPCError(Status.INTERNAL, f"{error}; nothing was rotated") from None
        storage.replace_sealed_values(resealed)
        if rows:
            storage.record_key_check(new_key.check)
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

    def status(self, storage: SealedSecretStorage) -> KeyStatus:
        """Where the key is and whether it opens this database; never creates a key."""
        check = storage.key_check()
        count = storage.secret_count()
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
            database=self._where,
            secrets=count,
            place=place,
            key_id=key_id,
            database_key_id="" if check is None else check.key_id.hex(),
            matches=matches,
            problem=problem,
            new_key_place="" if found is not None or problem else self._source.creation_place(),
        )
