"""Secrets at rest: AES-256-GCM sealed values under a master key kept outside the database.

The database stores only sealed values (``seal``/``unseal``, format in
``_sealed``) and a ``KeyCheck`` of the key they are sealed under, so a wrong
key is refused up front with the place it came from. The key itself lives in
``STIGMER_MASTER_KEY``, the OS keychain, or ``$STIGMER_HOME/master.key``
(``MasterKeySource``), as base64 text of 32 bytes.

    source = MasterKeySource()                   # env, keychain, file; opened lazily
    key, store = source.find() or source.create()
    sealed = seal(key, "GH_TOKEN", value, version=3)    # bound to the name, its version and the key
    value = unseal(key, "GH_TOKEN", sealed, version=3)  # SealedValueError if moved, altered, old or another key's

A backend that stores sealed secrets leaves the key's lifecycle (binding,
lookup, rotation, status) to ``MasterKeyPolicy`` and maps its
``SealedSecretStorage`` onto its tables; ``MasterKeyAdmin`` is what such a
backend offers ``stigmer secret status`` and ``rotate-key``.
"""

from ._errors import KeyLookupFailed, MasterKeyError, SealedValueError
from ._key import KEY_BYTES, KeyCheck, MasterKey
from ._policy import KeyRotation, KeyStatus, MasterKeyAdmin, MasterKeyPolicy, SealedSecretStorage
from ._sealed import FORMAT_VERSION, key_id_of, reseal, seal, unseal
from ._source import ENV_VAR, KEY_FILE_NAME, NEW_KEY_ENV_VAR, MasterKeySource, environment_key
from ._stores import EnvironmentKeyStore, FileKeyStore, KeychainKeyStore, KeyStore

__all__ = [
    "ENV_VAR",
    "FORMAT_VERSION",
    "KEY_BYTES",
    "KEY_FILE_NAME",
    "NEW_KEY_ENV_VAR",
    "EnvironmentKeyStore",
    "FileKeyStore",
    "KeyCheck",
    "KeyLookupFailed",
    "KeyRotation",
    "KeyStatus",
    "KeyStore",
    "KeychainKeyStore",
    "MasterKey",
    "MasterKeyAdmin",
    "MasterKeyError",
    "MasterKeyPolicy",
    "MasterKeySource",
    "SealedSecretStorage",
    "SealedValueError",
    "environment_key",
    "key_id_of",
    "reseal",
    "seal",
    "unseal",
]
