"""Where the master key is found, in order, and where a new one is created.

The order is ``STIGMER_MASTER_KEY`` (CI, containers), then the OS keychain
(only a backend ``stigmer_backend.backends.keychain`` trusts), then
``$STIGMER_HOME/master.key``. The first place that holds a key decides: a
key elsewhere is not consulted, so a wrong key is reported with its place
instead of being silently replaced by another.

A key is created only by ``create``, which the database calls only when it
holds no ciphertext; it goes to the keychain when one is trusted, else to
the key file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from ..home import stigmer_home
from ..keychain import Keychain, KeychainUnavailable, open_keychain
from ._errors import KeyLookupFailed, MasterKeyError
from ._key import KeyCheck, MasterKey
from ._stores import ENV_VAR, EnvironmentKeyStore, FileKeyStore, KeychainKeyStore, KeyStore

__all__ = ["ENV_VAR", "KEY_FILE_NAME", "NEW_KEY_ENV_VAR", "MasterKeySource", "environment_key"]

KEY_FILE_NAME = "master.key"
NEW_KEY_ENV_VAR = "STIGMER_NEW_MASTER_KEY"


class MasterKeySource:
    """The places a master key is looked for, opened on first use.

    :param home: the Stigmer home directory (default ``$STIGMER_HOME``, see
        ``stigmer_backend.backends.home``): the key file is ``home/master.key`` and
        the keychain entry's account is ``master-key:<home>``, so separate
        homes keep separate keys.
    :param environ: where ``STIGMER_MASTER_KEY`` is read (default ``os.environ``).
    :param keychain: ``"auto"`` (default) opens the best trusted OS keychain,
        if there is one; None never uses a keychain; or a ``Keychain``.

    Nothing is opened or read until the first call, so a backend can be
    created, and serve everything but secrets, without any key.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        keychain: Keychain | Literal["auto"] | None = "auto",
    ) -> None:
        self._home = Path(home) if home is not None else None
        self._environ = environ
        self._keychain = keychain
        self._stores: list[KeyStore] | None = None
        self._keychain_note = ""

    def _open(self) -> list[KeyStore]:
        home = (self._home if self._home is not None else stigmer_home()).resolve()
        stores: list[KeyStore] = [EnvironmentKeyStore(os.environ if self._environ is None else self._environ)]
        keychain, note = self._keychain, ""
        if keychain == "auto":
            try:
                keychain = open_keychain()
            except KeychainUnavailable as error:
                keychain, note = None, str(error)
        elif keychain is None:
            note = "the OS keychain is not used here"
        if isinstance(keychain, Keychain):
            stores.append(KeychainKeyStore(keychain, f"master-key:{home}"))
        stores.append(FileKeyStore(home / KEY_FILE_NAME))
        self._stores, self._keychain_note = stores, note
        return stores

    @property
    def stores(self) -> list[KeyStore]:
        """The stores, in the order they are consulted."""
        return self._open() if self._stores is None else self._stores

    @property
    def keychain_note(self) -> str:
        """Why no keychain is consulted, or "" when one is."""
        if self._stores is None:
            self._open()
        return self._keychain_note

    def find(self, check: KeyCheck | None = None) -> tuple[MasterKey, KeyStore] | None:
        """The first key found, and its store; None if no place holds one.

        :param check: the database's record of its key, if it has one. A
            store whose staged key matches it while its key does not was
            interrupted between a rotation's commit and the key's promotion:
            the staged key is promoted and used.

        Raises ``MasterKeyError`` for a key that must not be used (malformed,
        or a key file others can read), and ``KeyLookupFailed`` when no key
        was found but a place did not answer.
        """
        unanswered: list[str] = []
        for store in self.stores:
            try:
                text = store.load()
                staged = store.load_staged() if check is not None else None
            except KeyLookupFailed as error:
                unanswered.append(str(error))
                continue
            key = MasterKey.from_text(text, store.place) if text else None
            if staged and check is not None and (key is None or not key.matches(check)):
                candidate = MasterKey.from_text(staged, store.staged_place)
                if candidate.matches(check):
                    return self._promote(store, candidate), store
            if key is not None:
                return key, store
        if unanswered:
            raise KeyLookupFailed(
                f"no master key found, and {'; '.join(unanswered)}: unlock the keychain, or give the key in {ENV_VAR}"
            )
        return None

    def _promote(self, store: KeyStore, key: MasterKey) -> MasterKey:
        """Finishes an interrupted rotation; if that fails, the staged key still serves."""
        try:
            store.save(key.to_text())
            store.discard_staged()
        except MasterKeyError:
            return key
        return key.at(store.place)

    def creation_place(self) -> str:
        """Where ``create`` would store a new key."""
        return next(store for store in self.stores if store.writable).place

    def create(self) -> tuple[MasterKey, KeyStore]:
        """A new random key, stored in the keychain if one is trusted, else in the key file.

        Call only when the database holds no ciphertext (nothing could be
        lost) and ``find`` found no key.
        """
        store = next(store for store in self.stores if store.writable)
        key = MasterKey.generate(store.place)
        store.save(key.to_text())
        return key, store

    def searched(self) -> str:
        """Where a key was looked for, for a message saying none was found."""
        parts = [store.absence() for store in self.stores]
        if self.keychain_note:
            parts.insert(1, self.keychain_note)
        return "; ".join(parts)


def environment_key(name: str, environ: Mapping[str, str] | None = None) -> MasterKey | None:
    """The key in environment variable ``name`` (base64 text), or None if it is unset or empty.

    Used for ``STIGMER_NEW_MASTER_KEY``, the key a rotation moves to when the
    current key comes from ``STIGMER_MASTER_KEY`` (which Stigmer cannot change).
    """
    text = (os.environ if environ is None else environ).get(name)
    return MasterKey.from_text(text, f"the {name} environment variable") if text else None
