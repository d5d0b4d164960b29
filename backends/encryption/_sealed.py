"""Sealed values: a secret's value encrypted at rest, in a versioned format.

Format version 2 (written now), as stored in ``secrets.ciphertext``::

    offset  size  field
    0       1     format version (0x02)
    1       8     key id of the master key (``MasterKey.key_id``)
    9       12    nonce, fresh from the OS's CSPRNG for every seal
    21      n+16  AES-256-GCM ciphertext of the UTF-8 value, with its 16-byte tag

The AES key is derived from the master key with HKDF-SHA256 under the label
``stigmer sealed value format 2``. The associated data is the 9-byte header
(version and key id), the secret's name in UTF-8, a NUL byte, and the
secret's version (``Secret.version``) as 8 bytes big-endian. So a ciphertext
copied to another secret's row, sealed under another format or key, or an
older ciphertext of the same secret restored into its row (the row's version
has moved on) fails authentication instead of decrypting.

Format version 1 is format 2 without the NUL and the version (label
``stigmer sealed value format 1``): still read, never written; a value in it
is rewritten in format 2 by the next put or key rotation.
``tests/secrets/fixtures`` keeps a value sealed in each old format to prove
it stays readable.

A later format gets a new version byte and its own entry in ``_FORMATS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import SealedValueError
from ._key import KEY_ID_BYTES, MasterKey

__all__ = ["FORMAT_VERSION", "key_id_of", "reseal", "seal", "unseal"]

FORMAT_VERSION = 2
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = 1 + KEY_ID_BYTES


@dataclass(frozen=True)
class _Format:
    """One format version: its AES key label and what its associated data binds."""

    label: bytes
    binds_version: bool


_FORMATS: dict[int, _Format] = {
    1: _Format(label=b"stigmer sealed value format 1", binds_version=False),
    2: _Format(label=b"stigmer sealed value format 2", binds_version=True),
}


def _aead(key: MasterKey, label: bytes) -> AESGCM:
    return AESGCM(key.derive(label, 32))


def _associated_data(form: _Format, header: bytes, name: str, version: int) -> bytes:
    if not form.binds_version:
        return header + name.encode()
    return header + name.encode() + b"\x00" + version.to_bytes(8, "big")


def seal(key: MasterKey, name: str, value: str, *, version: int) -> bytes:
    """``value`` encrypted under ``key`` for version ``version`` of the secret ``name``, in the newest format."""
    header = bytes([FORMAT_VERSION]) + key.key_id
    nonce = os.urandom(_NONCE_BYTES)
    form = _FORMATS[FORMAT_VERSION]
    body = _aead(key, form.label).encrypt(nonce, value.encode(), _associated_data(form, header, name, version))
    return header + nonce + body


def key_id_of(sealed: bytes) -> bytes | None:
    """The key id recorded in ``sealed``; None if it is not in a known format."""
    if not isinstance(sealed, bytes) or not sealed or sealed[0] not in _FORMATS or len(sealed) < _HEADER_BYTES:
        return None
    return sealed[1:_HEADER_BYTES]


def unseal(key: MasterKey, name: str, sealed: bytes, *, version: int) -> str:
    """The value sealed for version ``version`` of ``name``; ``SealedValueError`` saying why not.

    The reasons told apart: an unknown format (written by a newer Stigmer, or
    not a sealed value at all), a value sealed under another master key, and
    a value that fails authentication (altered, moved from another secret, or
    an older value of this one put back).
    """
    if not isinstance(sealed, bytes):  # a TEXT or number where SQLite should hold a BLOB
        raise SealedValueError(
            name, f"secret {name!r} has a stored ciphertext that is not bytes (the database was altered)"
        )
    if not sealed:
        raise SealedValueError(name, f"secret {name!r} has an empty stored ciphertext (the database was altered)")
    form = _FORMATS.get(sealed[0])
    if form is None:
        raise SealedValueError(
            name,
            f"secret {name!r} is stored in format version {sealed[0]}, which this Stigmer does not know "
            "(written by a newer Stigmer, or the database was altered)",
        )
    if len(sealed) < _HEADER_BYTES + _NONCE_BYTES + _TAG_BYTES:
        raise SealedValueError(name, f"secret {name!r} has a truncated stored ciphertext (the database was altered)")
    recorded = sealed[1:_HEADER_BYTES]
    if recorded != key.key_id:
        raise SealedValueError(
            name,
            f"secret {name!r} was sealed under another master key (key id {recorded.hex()}), "
            f"not the master key in {key.place} (key id {key.key_id.hex()})",
        )
    header, nonce, body = (
        sealed[:_HEADER_BYTES],
        sealed[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES],
        sealed[_HEADER_BYTES + _NONCE_BYTES :],
    )
    try:
        plain = _aead(key, form.label).decrypt(nonce, body, _associated_data(form, header, name, version))
    except InvalidTag:
        raise SealedValueError(
            name,
            f"secret {name!r} failed its integrity check: its stored ciphertext was altered, "
            "belongs to another secret, or is an older value of this one",
        ) from None
    try:
        return plain.decode()
    except UnicodeDecodeError:  # authenticated, so only a broken sealer could cause it; never echo the bytes
        raise SealedValueError(name, f"secret {name!r} decrypted to bytes that are not UTF-8 text") from None


def reseal(old: MasterKey, new: MasterKey, name: str, sealed: bytes, *, version: int) -> bytes:
    """``sealed`` (in any known format) opened with ``old`` and sealed again under ``new``, in the newest format."""
    return seal(new, name, unseal(old, name, sealed, version=version), version=version)
