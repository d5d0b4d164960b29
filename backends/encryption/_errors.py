"""What goes wrong with master keys and sealed values, as one-line messages.

No message ever contains a key or a secret value: they name the place a key
came from, the secret concerned, and what to do.
"""

from __future__ import annotations

__all__ = ["KeyLookupFailed", "MasterKeyError", "SealedValueError"]


class MasterKeyError(Exception):
    """A master key cannot be used: malformed, unsafely stored, missing, or not the database's."""


class KeyLookupFailed(MasterKeyError):
    """A place that may hold the key did not answer (a keychain that timed out): maybe transient."""


class SealedValueError(Exception):
    """A stored ciphertext cannot be opened; the message says which secret and why.

    :ivar secret: the name of the secret whose ciphertext failed.
    """

    def __init__(self, secret: str, message: str) -> None:
        super().__init__(message)
        self.secret = secret
