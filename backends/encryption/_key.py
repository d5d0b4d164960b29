"""The master key: 32 random bytes, where it came from, and what derives from it.

Everything the database stores about the key is derived with HKDF-SHA256
under a distinct label, so no derived value reveals the key or another
derived value:

- ``key_id`` (8 bytes): written into every sealed value, so that a value
  sealed under another key is told apart from a damaged one;
- ``check_value`` (32 bytes): stored once per database, so that a wrong key
  is refused before anything is decrypted or written;
- the AES-256-GCM key of each sealed-value format (see ``_sealed``).

Keys are exchanged as text in one encoding everywhere (the
``STIGMER_MASTER_KEY`` variable, the keychain entry, the key file): standard
base64 of the 32 bytes, 44 characters with padding, as ``openssl rand
-base64 32`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._errors import MasterKeyError

__all__ = ["KEY_BYTES", "KeyCheck", "MasterKey"]

KEY_BYTES = 32
KEY_ID_BYTES = 8
_KEY_ID_LABEL = b"stigmer master key id"
_CHECK_LABEL = b"stigmer master key check"


@dataclass(frozen=True)
class KeyCheck:
    """What a database records about the key its secrets are sealed under.

    :param key_id: ``MasterKey.key_id`` of that key (shown to people, to tell keys apart).
    :param value: ``MasterKey.check_value`` of that key (compared in constant time).
    """

    key_id: bytes
    value: bytes


class MasterKey:
    """A 32-byte master key and the place it was found.

    :param material: the key bytes.
    :param place: where the key lives, for people: "the OS keychain (...)",
        "/home/me/.stigmer/master.key", "the STIGMER_MASTER_KEY environment
        variable". Every error about this key names it.

    The bytes are never shown: ``repr`` and ``str`` give the key id only.
    """

    def __init__(self, material: bytes, place: str) -> None:
        if len(material) != KEY_BYTES:
            raise MasterKeyError(f"the master key in {place} is {len(material)} bytes long; it must be {KEY_BYTES}")
        self._material = bytes(material)
        self.place = place

    @classmethod
    def generate(cls, place: str) -> MasterKey:
        """A new random key (from the OS's CSPRNG)."""
        return cls(os.urandom(KEY_BYTES), place)

    @classmethod
    def from_text(cls, text: str, place: str) -> MasterKey:
        """Parses the base64 text form; ``MasterKeyError`` naming ``place`` if it is not one."""
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            material = b""
        if len(material) != KEY_BYTES:
            raise MasterKeyError(
                f"the master key in {place} is malformed: expected the base64 encoding of {KEY_BYTES} bytes "
                "(as `openssl rand -base64 32` prints)"
            )
        return cls(material, place)

    def to_text(self) -> str:
        """The base64 text form, for storing the key."""
        return base64.b64encode(self._material).decode("ascii")

    def at(self, place: str) -> MasterKey:
        """The same key, said to live at ``place``."""
        return MasterKey(self._material, place)

    def derive(self, label: bytes, length: int) -> bytes:
        """``length`` bytes derived from the key for one purpose, named by ``label``."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(self._material)

    @cached_property
    def key_id(self) -> bytes:
        return self.derive(_KEY_ID_LABEL, KEY_ID_BYTES)

    @cached_property
    def check(self) -> KeyCheck:
        """The record a database keeps of this key."""
        return KeyCheck(self.key_id, self.derive(_CHECK_LABEL, 32))

    def matches(self, check: KeyCheck) -> bool:
        """Whether ``check`` was recorded for this key."""
        return hmac.compare_digest(self.check.value, check.value)

    def same_key(self, other: MasterKey) -> bool:
        return hmac.compare_digest(self._material, other._material)

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id.hex()}, place={self.place!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a MasterKey is not picklable: it must not leave memory")
