"""Backend-assigned identifiers that sort in creation order.

An identifier is a prefix naming the resource kind and a ULID: 48 bits of
milliseconds since the epoch, then 80 random bits, in Crockford base32 (26
characters), so bytewise order is time order. Within one millisecond, or when
another process's clock is ahead, ``next_id`` steps past the newest existing
identifier, so order follows creation even across processes writing one
database.
"""

from __future__ import annotations

import os
import time

__all__ = ["AGENT_INSTANCE_PREFIX", "EXECUTION_PREFIX", "next_id"]

EXECUTION_PREFIX = "exe_"
AGENT_INSTANCE_PREFIX = "agi_"

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_BITS = 128


def next_id(prefix: str, newest: str | None = None, now_ms: int | None = None) -> str:
    """A new identifier greater than ``newest`` (the greatest one of its kind so far)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    if newest is not None and newest.startswith(prefix):
        floor = _decode(newest[len(prefix) :])
        if floor is not None and value <= floor:
            value = floor + 1 + int.from_bytes(os.urandom(2), "big")
    return prefix + _encode(value)


def _encode(value: int) -> str:
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def _decode(text: str) -> int | None:
    if len(text) != 26 or any(c not in _INDEX for c in text):
        return None
    value = 0
    for c in text:
        value = value * 32 + _INDEX[c]
    return value if value < 1 << _BITS else None
