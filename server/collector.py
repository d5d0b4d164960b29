"""The garbage collector set for a process that serves calls for hours: ``stigmer server``.

What start-up built (modules, descriptors, reflection pools: some 30,000 tracked objects) lives
as long as the process, yet every full collection walked it. Frozen once the server listens, it
is left out: timed with ``gc.callbacks`` over 2,900 lifecycles at 16 in flight, the collector
took 222 ms of the server's time before (a full collection 15 ms) and 156 ms after (3.5 ms).

The young threshold stays CPython's: ten times it (7,000 allocations) cut the collector's time
to 114 ms, but garbage in reference cycles (a cancelled watch's task and exception) then lived
through more collections, and the server's peak RSS after five rounds of 500 watchers went
from 56 to 90 MiB (``benchmarks/watchers.py``).

Process-wide, so set by the command that owns the process, not by ``BackendServer`` (which a
test or an application may embed).
"""

from __future__ import annotations

import gc

__all__ = ["settle_for_serving"]


def settle_for_serving() -> None:
    """Moves what exists now out of the collector's reach; call once, when the server listens."""
    gc.collect()
    gc.freeze()
