"""Sealed values: a secret's value encrypted at rest, in a versioned format.

Format version 1, as stored in ``secrets.ciphertext``::

    offset  size  field
    0       1     format version (0x01)
    1       8     key id of the master key (``MasterKey.key_id``)
    9       12    nonce, fresh from the OS's CSPRNG for every seal
    21      n+16  AES-256-GCM ciphertext of the UTF-8 value, with its 16-byte tag

The AES key is derived from the master key with HKDF-SHA256 under the label
``stigmer sealed value format 1``. The associated data is the 9-byte header
(version and key id) followed by the secret's name in UTF-8, so a ciphertext
copied to another secret's row, or sealed under another format or key,
fails authentication instead of decrypting to another secret's value.

A later format gets a new version byte and its own entry in ``_FORMATS``;
values in older formats stay readable and are rewritten in the newest format
by the next put or key rotation. ``tests/secrets/fixtures`` keeps a value
sealed in each format to prove it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import SealedValueError
from ._key import KEY_ID_BYTES, MasterKey

__all__ = ["FORMAT_VERSION", "key_id_of", "reseal", "seal", "unseal"]

FORMAT_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16


@dataclass(frozen=True)
class _Format:
    """How to open one format version: its AES key label and header layout."""

    label: bytes
    header_bytes: int
    opener: Callable[[MasterKey, str, bytes], bytes]


def _aead(key: MasterKey, label: bytes) -> AESGCM:
    return AESGCM(key.derive(label, 32))


def _header_v1(key_id: bytes) -> bytes:
    return bytes([1]) + key_id


def _open_v1(key: MasterKey, name: str, sealed: bytes) -> bytes:
    nonce_start = 1 + KEY_ID_BYTES
    body_start = nonce_start + _NONCE_BYTES
    header, nonce, body = sealed[:nonce_start], sealed[nonce_start:body_start], sealed[body_start:]
    return _aead(key, _FORMATS[1].label).decrypt(nonce, body, header + name.encode())


_FORMATS: dict[int, _Format] = {
    1: _Format(label=b"stigmer sealed value format 1", header_bytes=1 + KEY_ID_BYTES, opener=_open_v1),
}


def seal(key: MasterKey, name: str, value: str) -> bytes:
    """``value`` encrypted under ``key`` for the secret ``name``, in the newest format."""
    header = _header_v1(key.key_id)
    nonce = os.urandom(_NONCE_BYTES)
    body = _aead(key, _FORMATS[FORMAT_VERSION].label).encrypt(nonce, value.encode(), header + name.encode())
    return header + nonce + body


def key_id_of(sealed: bytes) -> bytes | None:
    """The key id recorded in ``sealed``; None if it is not in a known format."""
    version = sealed[0] if sealed else None
    if version not in _FORMATS or len(sealed) < _FORMATS[version].header_bytes:
        return None
    return sealed[1 : 1 + KEY_ID_BYTES]


def unseal(key: MasterKey, name: str, sealed: bytes) -> str:
    """The value sealed for ``name``; ``SealedValueError`` saying why not.

    The reasons told apart: an unknown format (written by a newer Stigmer, or
    not a sealed value at all), a value sealed under another master key, and
    a value that fails authentication (altered, or moved from another secret).
    """
    if not sealed:
        raise SealedValueError(name, f"secret {name!r} has an empty stored ciphertext (the database was altered)")
    version = sealed[0]
    form = _FORMATS.get(version)
    if form is None:
        raise SealedValueError(
            name,
            f"secret {name!r} is stored in format version {version}, which this Stigmer does not know "
            "(written by a newer Stigmer, or the database was altered)",
        )
    if len(sealed) < form.header_bytes + _NONCE_BYTES + _TAG_BYTES:
        raise SealedValueError(name, f"secret {name!r} has a truncated stored ciphertext (the database was altered)")
    recorded = sealed[1 : 1 + KEY_ID_BYTES]
    if recorded != key.key_id:
        raise SealedValueError(
            name,
            f"secret {name!r} was sealed under another master key (key id {recorded.hex()}), "
            f"not the master key in {key.place} (key id {key.key_id.hex()})",
        )
    try:
        plain = form.opener(key, name, sealed)
    except InvalidTag:
        raise SealedValueError(
            name,
            f"secret {name!r} failed its integrity check: its stored ciphertext was altered "
            "or belongs to another secret",
        ) from None
    try:
        return plain.decode()
    except UnicodeDecodeError:  # authenticated, so only a broken sealer could cause it; never echo the bytes
        raise SealedValueError(name, f"secret {name!r} decrypted to bytes that are not UTF-8 text") from None


def reseal(old: MasterKey, new: MasterKey, name: str, sealed: bytes) -> bytes:
    """``sealed`` opened under ``old`` and sealed again under ``new``, in the newest format."""
    return seal(new, name, unseal(old, name, sealed))
