"""The garbage collector set for a process that serves calls for hours: ``stigmer server``.

Timed with ``gc.callbacks`` over 2,900 lifecycles at 16 in flight, CPython's collector took
222 ms of the server's time at its defaults (673 young, 61 middle and 6 full collections, a
full one 15 ms) and 114 ms set as here (50, 4 and 1), about 3% of the server's CPU saved:

- what start-up built (modules, descriptors, reflection pools: some 30,000 tracked objects)
  lives as long as the process, yet every full collection walked it; frozen once the server
  listens, it is left out;
- a call allocates a few hundred tracked objects, nearly all freed by reference counting
  when it ends; at the default threshold (700 allocations) a young collection ran every call
  or two, and every tenth one was followed by a middle one. Ten times the threshold costs the
  young collections the same in all (each walks the calls in flight, a tenth as often) and
  leaves a tenth of the middle and full ones.

Process-wide, so set by the command that owns the process, not by ``BackendServer`` (which a
test or an application may embed).
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_for_serving"]

YOUNG_THRESHOLD = 7_000
"""Allocations (net of frees) between young collections; CPython's default is 700."""


def settle_for_serving() -> None:
    """Freezes what exists now and spaces young collections out; call once, when the server listens."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
