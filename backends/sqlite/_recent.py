"""The rows this backend committed last, so its next write of them need not read them back first.

A status write decides on the execution's current row, then commits with a
compare-and-set on the version it decided on (``_backend._change``); a create
builds its execution from the agent's row and the newest id before it takes
the write lock. Read from the file, each of those is a read transaction of its
own: a statement, the locks and, on a machine where system calls are dear,
about as much as the write itself (``strace -c`` of ``stigmer server`` running
lifecycles one at a time: 34 fcntl and 59 pwrite calls per lifecycle). When the
last write of an execution was this backend's, as in a runner's claim, renewals
and result, the row it wrote is known: the write decides on that row, and the
compare-and-set, which runs on the stored row either way, proves it current.

Why that is exact: a version of an execution is committed once (every status
write is a compare-and-set on the version before it), so a kept row of version
*v* is the stored row of version *v*, whoever wrote since. Only committed rows
count: a kept row that a failed commit took back could share its version with
a different row committed later, so ``clear`` drops them all when a commit
fails. A write that finds the row changed, or a refusal decided on a kept row,
forgets it and decides again on the stored row, so nothing is ever refused on
what this backend merely remembers.

Bounded: executions in a terminal phase are never written again and are not
kept; at most ``capacity`` others are, the least recently written dropped first (and at
most ``capacity`` agent rows).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._rows import SqlValue, StoredRow
from ._schema import STATUS_COLUMN_NAMES

__all__ = ["RecentRows"]

_TERMINAL = frozenset(
    int(phase) for phase in (pb.ExecutionPhase.SUCCEEDED, pb.ExecutionPhase.FAILED, pb.ExecutionPhase.CANCELLED)
)


class RecentRows:
    """Execution rows, agent rows and the newest execution id, as this backend last committed or read them in a write.

    :param capacity: how many unfinished executions (and agent rows) are kept.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._executions: OrderedDict[str, dict[str, SqlValue]] = OrderedDict()
        self._agents: dict[tuple[str, str], sqlite3.Row] = {}
        self.newest_execution: str | None = None
        """The newest execution id seen in a write: where a create's next id starts (checked under the lock)."""

    def execution(self, execution_id: str) -> StoredRow | None:
        """The row of ``execution_id`` as this backend last wrote it, if kept."""
        return self._executions.get(execution_id)

    def remember_execution(self, row: dict[str, SqlValue]) -> None:
        """``row`` (all ``EXECUTION_COLUMNS``, kept as given) was just written in this backend's transaction."""
        execution_id = str(row["id"])
        if row["phase"] in _TERMINAL:
            self._executions.pop(execution_id, None)
            return
        self._executions[execution_id] = row
        self._executions.move_to_end(execution_id)
        if len(self._executions) > self._capacity:
            self._executions.popitem(last=False)

    def remember_status(
        self, before: StoredRow, version: int, update_us: int | None, status: tuple[SqlValue, ...]
    ) -> None:
        """``before`` was just given ``version``, ``update_us`` and ``status`` (every status column)."""
        row = dict(before)
        row["version"] = version
        row["update_us"] = update_us
        row.update(zip(STATUS_COLUMN_NAMES, status, strict=True))
        self.remember_execution(row)

    def forget_execution(self, execution_id: str) -> None:
        self._executions.pop(execution_id, None)

    def agent(self, key: tuple[str, str]) -> sqlite3.Row | None:
        """The agent row last read in a write for ``key`` (``("a.id", id)`` or ``("a.name", name)``)."""
        return self._agents.get(key)

    def remember_agent(self, key: tuple[str, str], row: sqlite3.Row) -> None:
        if len(self._agents) >= self._capacity:
            self._agents.clear()
        self._agents[key] = row

    def forget_agents(self) -> None:
        """This backend applied or deleted an agent instance."""
        self._agents.clear()

    def clear(self) -> None:
        """A commit failed: what it held is not stored, so nothing kept is trusted."""
        self._executions.clear()
        self._agents.clear()
        self.newest_execution = None
