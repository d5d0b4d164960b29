"""The check every call passes before its handler runs: authentication, and shutdown.

grpclib hands a handler only the message, so the bearer token is checked on
the ``RecvRequest`` event, which carries the call's metadata and fires before
the handler is called: a refused call never reads or writes anything. The
gate also counts the calls in flight, so shutdown can wait for them.

Policy:

- Health checks (``grpc.health.v1.Health``) need no token and pass while the
  server drains (reporting ``NOT_SERVING``): load balancers and orchestrators
  probe without credentials, and the answer says nothing about the data.
- Everything else, reflection included, needs ``authorization: Bearer
  <token>`` when the server has a token: reflection describes the whole API,
  and ``buf curl`` / ``grpcurl`` send reflection headers without effort.
- While draining, new calls fail with ``UNAVAILABLE`` (safe for a client to
  retry elsewhere, nothing was done) and server streams end with
  ``UNAVAILABLE`` (a watcher watches again); unary calls already running
  finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.events import RecvRequest

__all__ = ["HEALTH_PREFIX", "CallGate"]

log = logging.getLogger("stigmer.server")

HEALTH_PREFIX = "/grpc.health.v1.Health/"

Handler = Callable[[Any], Coroutine[Any, Any, None]]


class CallGate:
    """Admits, refuses and counts calls; register ``on_request`` for ``RecvRequest``.

    :param token: the bearer token every call (but health checks) must carry; ``None`` admits all.
    :param streaming_methods: ``:path`` names of the server-streaming methods,
        which end at shutdown instead of being waited for.
    """

    def __init__(self, token: str | None, streaming_methods: Iterable[str]) -> None:
        self._expected = f"Bearer {token}".encode() if token is not None else None
        self._streaming = frozenset(streaming_methods)
        self._draining = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet finished."""
        return self._in_flight

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    async def on_request(self, event: RecvRequest) -> None:
        method = event.method_name
        if method.startswith(HEALTH_PREFIX):
            return  # open to probes, answered while draining, never waited for (a health Watch never ends)
        if self._draining.is_set():
            raise GRPCError(Status.UNAVAILABLE, "the server is shutting down; try again")
        if self._expected is not None:
            self._authenticate(event)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("call %s from %s", method, _peer(event))
        event.method_func = self._tracked(event.method_func, method, streaming=method in self._streaming)

    def _authenticate(self, event: RecvRequest) -> None:
        assert self._expected is not None
        presented = event.metadata.getall("authorization", [])
        if len(presented) != 1:
            # Two headers could smuggle a second credential past a proxy that checks the first: refuse both.
            problem = "no bearer token" if not presented else "more than one authorization header"
            log.warning("refused %s from %s: %s", event.method_name, _peer(event), problem)
            raise GRPCError(Status.UNAUTHENTICATED, f"{problem}: send one header 'authorization: Bearer <token>'")
        value = presented[0]
        candidate = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        scheme, _, _ = candidate.partition(b" ")
        # The scheme is case-insensitive (RFC 7235); the comparison of the rest takes constant time.
        candidate = b"Bearer" + candidate[len(scheme) :] if scheme.lower() == b"bearer" else candidate
        if not hmac.compare_digest(candidate, self._expected):
            log.warning("refused %s from %s: %s", event.method_name, _peer(event), "invalid bearer token")
            raise GRPCError(Status.UNAUTHENTICATED, "invalid bearer token")

    def _tracked(self, handler: Handler, method: str, *, streaming: bool) -> Handler:
        async def tracked(stream: Any) -> None:
            self._in_flight += 1
            self._idle.clear()
            started = time.perf_counter()
            try:
                if streaming:
                    await self._until_draining(handler(stream))
                else:
                    await handler(stream)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("done %s in %.1f ms", method, (time.perf_counter() - started) * 1000)

        return tracked

    async def _until_draining(self, call: Coroutine[Any, Any, None]) -> None:
        """Runs a streaming call until it ends, or until shutdown starts (then ``UNAVAILABLE``)."""
        task = asyncio.ensure_future(call)
        drain = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({task, drain}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise GRPCError(Status.UNAVAILABLE, "the server is shutting down; watch again")
        task.result()

    def drain(self) -> None:
        """Refuses new calls from now on and ends server streams."""
        self._draining.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Waits until no call is in flight, at most ``timeout`` seconds; False if some still are."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _peer(event: RecvRequest) -> str:
    address = event.peer.addr()
    return f"{address[0]}:{address[1]}" if address else "unknown peer"
