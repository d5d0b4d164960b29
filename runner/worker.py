"""A runner as a long-running worker: find PENDING executions, claim them, run up to N at once.

Any number of workers, on any number of machines, may serve one backend:
each claim is a compare-and-set on the execution's version, so exactly one
wins and the others move on. Work is found by listing PENDING executions
(oldest first); an idle backend is listed at a cadence that backs off from
``min_idle`` to ``max_idle`` seconds, so idle workers cost a few cheap calls
a second at most, never a busy loop. Candidates are tried in random order,
so workers that list together do not all race for the same execution.

Stopping (``stop()``, or SIGTERM/SIGINT in ``stigmer runner start``): no new
claims; what is running gets ``grace`` seconds to finish, then is cancelled
with a reason. Nothing is left RUNNING. A backend that refuses the worker's
credential (``UNAUTHENTICATED``, or ``PERMISSION_DENIED`` for a claim: a token
bound to another runner id) stops it the same way, with ``refused`` set: the
answer cannot change while the process keeps its credential, and a worker
that went on trying would only look alive to whatever supervises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Collection
from datetime import timedelta

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb

from .executor import default_runner_id, run_execution

__all__ = ["Worker"]

Phase = pb.ExecutionPhase

_REFUSING = (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED)


class Worker:
    """Claims and runs the backend's PENDING executions until stopped.

    :param backend: any backend (``SqliteBackend``, ``CloudBackend``, ...).
    :param runner_id: this worker's id in each execution's ``runner_id``.
    :param concurrency: how many executions run at once.
    :param agents: only executions of these agent instance names (empty: all).
    :param lease: the lease each claim takes and each renewal extends.
    :param grace: seconds running executions get to finish after ``stop()``.
    :param on_status: one line per event, for people (no secret values).
    """

    def __init__(
        self,
        backend: pb.BackendServiceBase,
        *,
        runner_id: str | None = None,
        concurrency: int = 4,
        agents: Collection[str] = (),
        lease: timedelta = timedelta(seconds=30),
        grace: float = 30.0,
        min_idle: float = 0.2,
        max_idle: float = 2.0,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.runner_id = runner_id or default_runner_id()
        self.concurrency = concurrency
        self.agents = frozenset(agents)
        self.lease = lease
        self.grace = grace
        self.min_idle, self.max_idle = min_idle, max_idle
        self._say = on_status or (lambda text: None)
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._missing: set[str] = set()
        self.refused: GRPCError | None = None
        """Why the backend refused this worker's credential, if it did (``run`` then stopped by itself)."""

    def stop(self) -> None:
        """Stop claiming; ``run`` then finishes or cancels what it holds and returns.

        A second call ends the grace period at once.
        """
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    async def run(self) -> None:
        """Serves until ``stop()``; returns when nothing it claimed is RUNNING any more."""
        idle = self.min_idle
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._busy())
                if free <= 0:
                    await self._wait(None)
                    continue
                started = await self._claim_some(free)
                if started:
                    idle = self.min_idle
                    continue
                await self._wait(idle)
                idle = min(idle * 2, self.max_idle)
        finally:
            await self._drain()

    async def _claim_some(self, free: int) -> int:
        try:
            candidates = await self._pending(free * 2)
        except GRPCError as error:
            if error.status in _REFUSING:
                self._refuse(error)
            else:
                self._say(f"cannot list executions: {error.status.name}: {error.message}")
            return 0
        random.shuffle(candidates)
        started = 0
        for candidate in candidates:
            if started >= free or self._stopping.is_set():
                break
            claimed = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._execute(candidate, claimed))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            if await claimed:
                started += 1
        return started

    async def _pending(self, wanted: int) -> list[pb.Execution]:
        """The oldest PENDING executions of this worker's agents (listed per agent: others' never hide them)."""
        request = pb.ListExecutionsRequest(phases=[Phase.PENDING], page_size=min(max(wanted, 1), 100))
        if not self.agents:
            return (await self.backend.list_executions(request)).executions
        found: list[pb.Execution] = []
        for name in sorted(self.agents):
            try:
                ref = pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name))
                agent = (await self.backend.get_agent_instance(ref)).agent_instance
            except GRPCError as error:
                if error.status != Status.NOT_FOUND:
                    raise
                if name not in self._missing:  # a typo would otherwise wait in silence for ever
                    self._missing.add(name)
                    self._say(f"agent instance {name!r} not found: nothing of it to run until it is applied")
                continue
            self._missing.discard(name)
            assert agent is not None  # GetAgentInstance answers with it or fails NOT_FOUND
            request.agent_instance_id = agent.id
            found += (await self.backend.list_executions(request)).executions
        return found

    async def _execute(self, execution: pb.Execution, claimed: asyncio.Future[bool]) -> None:
        """Runs one execution; ``claimed`` learns whether this worker won it."""

        def on_status(line: str) -> None:
            if not claimed.done():
                claimed.set_result(True)
            self._say(line)

        try:
            await run_execution(
                self.backend,
                execution,
                runner_id=self.runner_id,
                lease=self.lease,
                on_status=on_status,
                cancel_reason=f"runner {self.runner_id} stopped before the execution finished",
            )
        except GRPCError as error:
            lost = error.status in (Status.ABORTED, Status.FAILED_PRECONDITION, Status.NOT_FOUND)
            if error.status in _REFUSING and not claimed.done():
                self._refuse(error)
            elif not (lost and not claimed.done()):
                self._say(f"{execution.id}: {error.status.name}: {error.message}")
        except Exception as error:  # one bad execution must not stop the worker
            self._say(f"{execution.id}: {type(error).__name__}: {error}")
        finally:
            if not claimed.done():
                claimed.set_result(False)

    def _refuse(self, error: GRPCError) -> None:
        """Stops claiming for good: the backend refuses this worker's credential."""
        if self.refused is None:
            self.refused = error
        self._stopping.set()  # not ``stop()``: a second refusal must not cut the grace of what runs

    async def _wait(self, timeout: float | None) -> None:
        """Until an execution ends, ``stop()`` or ``timeout``, whichever comes first.

        Only tasks still running count: one that already ended (a claim the backend refused,
        whose task leaves ``_running`` a moment later) would end the wait at once, and a claim
        refused every time (an invalid ``--runner-id``, a credential bound to another runner)
        would list the backend in a busy loop.
        """
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._stopping.wait())}
        running = self._busy()
        if running:
            waits.add(asyncio.ensure_future(asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _busy(self) -> set[asyncio.Task[None]]:
        """The tasks still running (an ended one leaves ``_running`` only once its callback has run)."""
        return {task for task in self._running if not task.done()}

    async def _drain(self) -> None:
        if not self._running:
            return
        self._say(f"stopping: {len(self._running)} execution(s) get {self.grace:g} s to finish (signal again: now)")
        hurry = asyncio.ensure_future(self._hurry.wait())
        finished = asyncio.ensure_future(asyncio.wait(set(self._running)))
        await asyncio.wait({hurry, finished}, timeout=self.grace, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        finished.cancel()
        late = {task for task in self._running if not task.done()}
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
