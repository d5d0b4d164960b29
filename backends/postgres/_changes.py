"""Which executions changed, from any replica: ``LISTEN`` on one connection per backend.

The schema's trigger sends ``NOTIFY stigmer_executions, '<execution id>'``
when a write commits. One dedicated connection per backend listens while
anyone watches and wakes only the watchers of that execution, so a thousand
watches cost one connection and no polling. A notification carries no data
the watcher trusts: it re-reads the history table, so notifications that
are merged, or lost while the connection was down, cost nothing. After every
(re)connect every watcher is woken to catch up on what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg

from ._schema import NOTIFY_CHANNEL

__all__ = ["ExecutionChanges"]

_log = logging.getLogger(__name__)
_RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # between reconnection attempts, then 2 s each


class ExecutionChanges:
    """Wake-ups for watchers of executions.

    :param connect: opens a new autocommit connection to the database.

    ``notifications`` counts the notifications received and ``connects``
    the times listening (re)started, for tests and diagnostics.
    """

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection]]) -> None:
        self._connect = connect
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self.notifications = 0
        self.connects = 0

    @contextlib.asynccontextmanager
    async def subscription(self, execution_id: str, timeout: float) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``execution_id`` may have changed, once the listener is listening.

        Clear the event *before* reading the state it guards, then wait on
        it: a change committed in between has set it already, so none is
        missed. Raises the connection's error if listening could not start
        within ``timeout`` seconds.
        """
        event = asyncio.Event()
        self._waiters.setdefault(execution_id, set()).add(event)
        try:
            if self._task is None or self._task.done():
                self._failure = None
                self._task = asyncio.get_running_loop().create_task(self._listen())
            if not self._listening.is_set():
                waiting = asyncio.ensure_future(self._listening.wait())
                await asyncio.wait({waiting, self._task}, timeout=timeout, return_when="FIRST_COMPLETED")
                waiting.cancel()
                if not self._listening.is_set():
                    raise self._failure or TimeoutError("the change listener did not start in time")
            yield event
        finally:
            events = self._waiters.get(execution_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[execution_id]
            if not self._waiters and self._task is not None:
                self._task.cancel()
                self._task = None
                self._listening.clear()

    def _wake(self, execution_id: str) -> None:
        for event in self._waiters.get(execution_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        attempt = 0
        while True:
            try:
                conn = await self._connect()
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.connects += 1
                    attempt = 0
                    self._listening.set()
                    self._wake_all()  # catch up on anything committed while nobody listened
                    async for notify in conn.notifies():
                        self.notifications += 1
                        self._wake(notify.payload)
            except (psycopg.Error, OSError) as error:
                self._listening.clear()
                self._failure = error
                if self.connects == 0 and attempt >= 2:
                    raise  # never connected: tell the watchers waiting for the first LISTEN
                _log.warning("listening for execution changes failed (%s); reconnecting", type(error).__name__)
            self._listening.clear()
            await asyncio.sleep(_RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)])
            attempt += 1

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._listening.clear()
