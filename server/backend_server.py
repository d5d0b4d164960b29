"""``BackendServer``: any ``Backend`` served over gRPC, with health, reflection, auth and a graceful stop.

The served services are ``stigmer.backend.v1.BackendService`` (the backend
itself), ``grpc.health.v1.Health`` (``SERVING`` for the whole server and for
BackendService, ``NOT_SERVING`` once shutdown starts) and server reflection,
so ``buf curl``, ``grpcurl`` or a grpcio client can call the server without
our proto files. See ``gate`` for who may call what.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Handler
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.server import Server

from stigmer.backends.base import Backend
from stigmer.backends.codec import ContractCodec
from stigmer.gen.stigmer.backend import v1 as pb

from .gate import CallGate, GatedService
from .reflection import with_reflection

__all__ = ["DEFAULT_GRACE", "BackendServer", "serve_until_signalled"]

log = logging.getLogger("stigmer.server")

DEFAULT_GRACE = 10.0
"""Seconds shutdown waits for unary calls in flight before cancelling them."""

_BACKEND_INFO = "/stigmer.backend.v1.BackendService/GetBackendInfo"


class _ServedBackend:
    """The backend's generated handlers, with ``GetBackendInfo`` reporting what the server adds.

    ``CAPABILITY_AUTHENTICATION`` is a property of the endpoint, not of the
    storage: the server adds it when it requires a token.
    """

    def __init__(self, backend: Backend, authenticates: bool) -> None:
        self._backend = backend
        self._authenticates = authenticates

    def __mapping__(self) -> dict[str, Handler]:
        mapping = dict(self._backend.__mapping__())
        mapping[_BACKEND_INFO] = mapping[_BACKEND_INFO]._replace(func=self._get_backend_info)
        return mapping

    async def _get_backend_info(self, stream: Any) -> None:
        request = await stream.recv_message()
        response = await self._backend.get_backend_info(request)
        if self._authenticates and pb.Capability.AUTHENTICATION not in response.capabilities:
            response.capabilities = [*response.capabilities, pb.Capability.AUTHENTICATION]
        await stream.send_message(response)


class BackendServer:
    """Serves ``backend`` on one listening socket until ``shutdown``.

    :param backend: any ``Backend`` (SQLite, another ``CloudBackend``, ...);
        the caller keeps ownership and closes it after shutdown.
    :param token: bearer token required on every call but health checks; ``None`` for none.
    :param ssl_context: server TLS context (ALPN ``h2``), or ``None`` for plaintext h2c.
    """

    def __init__(self, backend: Backend, *, token: str | None = None, ssl_context: ssl.SSLContext | None = None):
        self._ssl = ssl_context
        served = _ServedBackend(backend, authenticates=token is not None)
        self._status = ServiceStatus()
        self._status.set(True)
        health = Health({OVERALL: [self._status], served: [self._status]})
        self._gate = CallGate(token)
        services = [GatedService(service, self._gate) for service in with_reflection([served, health])]
        # upb writes and parses the bytes: betterproto2's pure-Python wire format was most of a call's cost.
        self._server = Server(services, codec=ContractCodec())
        self._address: tuple[str, int] | None = None

    @property
    def gate(self) -> CallGate:
        """The admission check: calls in flight, draining state."""
        return self._gate

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on; the port is the real one when 0 was asked."""
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    async def start(self, sock: socket.socket) -> None:
        """Starts accepting on ``sock`` (see ``startup.listening_socket``); the server owns it from now on."""
        self._address = sock.getsockname()[:2]
        await self._server.start(sock=sock, ssl=self._ssl)

    async def shutdown(self, grace: float = DEFAULT_GRACE) -> None:
        """Stops gracefully: new calls are refused and streams end (``UNAVAILABLE``), health turns
        ``NOT_SERVING``, unary calls in flight get up to ``grace`` seconds to finish; then the
        server closes, cancelling whatever is left.
        """
        self._status.set(False)
        self._gate.drain()
        if not await self._gate.wait_idle(grace):
            log.warning("%d call(s) still running after %.1fs; cancelling them", self._gate.in_flight, grace)
        self._server.close()
        await self._server.wait_closed()


async def serve_until_signalled(
    backend: Backend,
    sock: socket.socket,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    grace: float = DEFAULT_GRACE,
    on_listening: Callable[[tuple[str, int]], Awaitable[None] | None] | None = None,
) -> None:
    """Serves ``backend`` on ``sock`` until SIGINT or SIGTERM, then shuts down gracefully.

    A second signal during shutdown stops waiting for calls in flight.

    :param on_listening: called with the address once the server accepts connections.
    """
    server = BackendServer(backend, token=token, ssl_context=ssl_context)
    await server.start(sock)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            if on_listening is not None:
                result = on_listening(server.address)
                if result is not None:
                    await result
            await stop.wait()
        except BaseException:
            await asyncio.shield(server.shutdown(0))
            raise
        stop.clear()
        log.info("shutting down: waiting up to %.0fs for %d call(s) in flight", grace, server.gate.in_flight)
        shutdown = asyncio.ensure_future(server.shutdown(grace))
        second_signal = asyncio.ensure_future(stop.wait())
        await asyncio.wait({shutdown, second_signal}, return_when=asyncio.FIRST_COMPLETED)
        if not shutdown.done():
            log.warning("second signal: not waiting for calls in flight")
            shutdown.cancel()
            await server.shutdown(0)
        second_signal.cancel()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
