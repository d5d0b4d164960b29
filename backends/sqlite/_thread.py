"""Where a ``SqliteBackend``'s storage work runs, so the event loop never waits on a lock.

A write can wait up to the busy timeout for another process's write lock
(the CLI, runners and a server share the file); done on the event loop, that
wait froze every call of a server, health checks included. A thread hop for
every call, though, cut in-process throughput by more than half on a loaded
2-core machine (``benchmarks/sqlite_throughput.py``: 0.62 -> 0.39 of raw
sqlite3), for work that takes microseconds when the file is free.

So each call is first tried on the caller's loop *without waiting*: the
connection's busy timeout is 0 there, and a call that meets a lock fails at
once with ``SQLITE_BUSY`` before it has changed anything (the lock is taken
by ``BEGIN``; a transaction that fails rolls back). That call is then run
again on this module's one thread, where the connection waits the full busy
timeout; while anything is queued there, later calls queue behind it, so the
connection is used by one thread at a time and calls keep their order.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["StorageThread"]

T = TypeVar("T")

# A job: the caller's loop, the future it awaits there, and the call. ``None`` stops the thread.
_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


class StorageThread:
    """Runs storage calls: inline while nothing waits on the thread, else in order on the thread.

    :param name: the thread's name (seen in debuggers and ``ps -L``).
    :param would_block: whether an exception from an inline attempt means
        "a lock is taken": the call is then retried on the thread.
    :param enter: called on the thread before each job (set the waiting busy timeout).
    :param leave: called on the thread after each job (back to not waiting).
    """

    def __init__(
        self,
        name: str,
        *,
        would_block: Callable[[BaseException], bool],
        enter: Callable[[], None],
        leave: Callable[[], None],
    ) -> None:
        self._would_block = would_block
        self._enter = enter
        self._leave = leave
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._queued = 0  # jobs handed to the thread and not yet settled; only touched on event loops
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Calls waiting on or running on the thread (so not inline)."""
        return self._queued

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``: inline if the thread is idle and it does not block, else on the thread."""
        if not self._queued:
            try:
                return fn(*args)
            except Exception as error:
                if not self._would_block(error):
                    raise
        return await self.run_on_thread(fn, *args)

    async def run_on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` run on the storage thread; its result or exception, delivered on this loop.

        A caller that stops waiting (cancelled) does not stop the job: it runs
        to its end, and only then may calls run inline again.
        """
        if not self._thread.is_alive():
            raise RuntimeError("the storage thread is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued += 1
        self._jobs.put((loop, future, fn, args))
        return await future

    def stop(self) -> None:
        """Lets queued jobs finish, then ends the thread (without waiting for it)."""
        self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn, args = job
            result: Any = None
            error: BaseException | None = None
            try:
                self._enter()
                try:
                    result = fn(*args)
                finally:
                    self._leave()
            except BaseException as raised:  # handed to the awaiting caller, who re-raises it
                error = raised
            try:
                loop.call_soon_threadsafe(self._settle, future, result, error)
            except RuntimeError:  # the caller's loop closed while the job ran
                pass

    def _settle(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """On the caller's loop, once the job is over."""
        self._queued -= 1
        if future.cancelled():  # the caller gave up (deadline, disconnect); the work itself is done
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
