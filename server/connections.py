"""Connection limits: no client, with or without a token, may hold the server's sockets for nothing.

Silent or preface-only connections used to stay open forever; 1,100 of them
exhausted the file descriptors and health checks timed out. Now:

- a connection that has not sent anything within ``handshake_timeout``
  seconds of being accepted (after TLS, which asyncio times out itself) is
  closed;
- a connection with no call running and no new call for ``idle_timeout``
  seconds is closed (clients reconnect on their next call;
  a watch in progress is a running call, so it is never cut);
- at most ``max_connections`` are open: a new one evicts the longest-idle
  connection that has no call running, so a probe still gets in while idle
  sockets pile up; only when every connection is busy is the new one refused;
- HTTP/2 keepalive pings find peers that vanished (``KEEPALIVE_*``).

Refusals and evictions are logged, rate-limited. grpclib has no hook for any
of this: ``GuardedServer`` wraps each connection's protocol object, which it
gets from grpclib's own factory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from grpclib.config import Configuration
from grpclib.protocol import H2Protocol
from grpclib.server import Handler, Server

from .rate_limited_log import RateLimitedWarnings

__all__ = ["DEFAULT_LIMITS", "KEEPALIVE", "ConnectionLimits", "GuardedServer"]

log = logging.getLogger("stigmer_backend.server")

KEEPALIVE = Configuration(
    _keepalive_time=60.0,  # ping a connection silent this long (grpclib's server default: 2 hours)
    _keepalive_timeout=20.0,  # and close it if the ping is not answered in this time
    _keepalive_permit_without_calls=True,
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections, and how long they may say nothing.

    :param max_connections: open connections at most (each is a file descriptor).
    :param idle_timeout: seconds a connection without running calls may stay silent.
    :param handshake_timeout: seconds a new connection has to send its first bytes.
    """

    max_connections: int = 256
    idle_timeout: float = 300.0
    handshake_timeout: float = 10.0


DEFAULT_LIMITS = ConnectionLimits()


class _Guarded(asyncio.Protocol):
    """grpclib's ``H2Protocol`` for one connection, with the guard told of what happens on it."""

    def __init__(self, inner: H2Protocol, guard: _Guard) -> None:
        self._inner = inner
        self._guard = guard
        self.transport: asyncio.Transport | None = None
        self.opened = time.monotonic()
        self.spoke = False
        self._started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # what a stream server's loop.create_server gives
        self.transport = transport
        if not self._guard.admit(self):
            transport.abort()
            return
        self._started = True
        # Each frame as grpclib writes it, not joined like CloudBackend's requests (``BatchedWrites``):
        # the client starts on a response's headers and message while the server is still finishing
        # the call. Held until the last frame, lifecycles one at a time ran 7% slower (interleaved
        # A/B, 21 rounds: 1.072 [0.944..1.234] unbatched/batched), at 16 in flight and on a loaded
        # machine the same (1.02, 1.015).
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.spoke = True
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        if self._started:
            self._inner.connection_lost(exc)

    @property
    def last_call(self) -> float:
        """When the last call arrived (or the connection opened); pings and their answers do not count."""
        started = self._inner.connection.last_stream_created if self._started else None
        return self.opened if started is None else started

    @property
    def busy(self) -> bool:
        """A call is running on this connection (grpclib's handler keeps one task per stream)."""
        if not self._started:
            return False
        handler = self._inner.handler
        assert isinstance(handler, Handler)  # the protocol Server._protocol_factory makes serves with one
        return any(not task.done() for task in handler._tasks.values())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def peer(self) -> str:
        address = self.transport.get_extra_info("peername") if self.transport is not None else None
        return f"{address[0]}:{address[1]}" if address else "unknown peer"


class _Guard:
    def __init__(self, limits: ConnectionLimits) -> None:
        self._limits = limits
        self._open: dict[_Guarded, None] = {}  # in order of acceptance
        self._sweeper: asyncio.TimerHandle | None = None
        self._warnings = RateLimitedWarnings(log)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, connection: _Guarded) -> bool:
        if len(self._open) >= self._limits.max_connections:
            idle = [other for other in self._open if not other.busy]
            if not idle:
                self._warnings.warn(
                    f"refused a connection from {connection.peer()}: "
                    f"{self._limits.max_connections} connections are open and all are busy"
                )
                return False
            victim = min(idle, key=lambda other: other.last_call)
            self._warnings.warn(
                f"closed the idle connection from {victim.peer()}: {self._limits.max_connections} connections are open"
            )
            self.forget(victim)
            victim.close()
        self._open[connection] = None
        if self._sweeper is None:
            self._schedule()
        return True

    def forget(self, connection: _Guarded) -> None:
        self._open.pop(connection, None)

    def _schedule(self) -> None:
        period = min(self._limits.handshake_timeout, self._limits.idle_timeout) / 2
        self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self._open):
            if not connection.spoke and now - connection.opened >= self._limits.handshake_timeout:
                self._warnings.warn(f"closed the connection from {connection.peer()}: it sent nothing")
            elif now - connection.last_call >= self._limits.idle_timeout and not connection.busy:
                log.debug("closed the idle connection from %s", connection.peer())
            else:
                continue
            self.forget(connection)
            connection.close()
        self._schedule()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class GuardedServer(Server):
    """grpclib's ``Server`` with ``limits`` on its connections and keepalive pings."""

    def __init__(self, handlers: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handlers, config=KEEPALIVE, **kwargs)
        self._guard = _Guard(limits)

    @property
    def open_connections(self) -> int:
        return self._guard.open_connections

    def _protocol_factory(self) -> Any:  # grpclib's factory, one level down
        return _Guarded(super()._protocol_factory(), self._guard)

    def close(self) -> None:
        self._guard.close()
        super().close()
