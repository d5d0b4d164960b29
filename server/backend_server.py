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
from pathlib import Path
from typing import Any

from grpclib import GRPCError
from grpclib.const import Handler
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health

from stigmer_backend.backends.base import Backend
from stigmer_backend.backends.codec import ContractCodec
from stigmer_backend.gen.stigmer.backend import v1 as pb

from .authorization import AuthorizedService, Principal
from .connections import DEFAULT_LIMITS, ConnectionLimits, GuardedServer
from .gate import CallGate, GatedService
from .reflection import served_pools, with_reflection
from .requests import DEFAULT_MAX_REQUEST_BYTES, CheckedService, RequestReader

__all__ = ["DEFAULT_GRACE", "BackendServer", "serve_until_signalled"]

log = logging.getLogger("stigmer_backend.server")

DEFAULT_GRACE = 10.0
"""Seconds shutdown waits for unary calls in flight before cancelling them."""

_BACKEND_INFO = "/stigmer.backend.v1.BackendService/GetBackendInfo"


class _ServedBackend:
    """The backend's generated handlers, with ``GetBackendInfo`` reporting what the server adds.

    ``CAPABILITY_AUTHENTICATION`` and ``CAPABILITY_ROLES`` are properties of
    the endpoint, not of the storage: the server adds them when it requires a
    token, and when its tokens have roles.
    """

    def __init__(self, backend: Backend, authenticates: bool, roles: bool = False) -> None:
        self._backend = backend
        self._authenticates = authenticates
        self._roles = roles
        self._private_paths = _private_paths(backend)

    def __mapping__(self) -> dict[str, Handler]:
        mapping = dict(self._backend.__mapping__())
        mapping[_BACKEND_INFO] = mapping[_BACKEND_INFO]._replace(func=self._get_backend_info)
        if self._private_paths:
            mapping = {
                method: handler._replace(func=self._without_paths(handler.func)) for method, handler in mapping.items()
            }
        return mapping

    def _without_paths(self, func: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``func`` with the server's file paths replaced in the messages of the errors it raises.

        A local user is told which file is wrong; a remote caller learns nothing of the server's disk.
        """
        paths = self._private_paths

        async def handler(stream: Any) -> None:
            try:
                await func(stream)
            except GRPCError as error:
                message = error.message or ""
                shown = message
                for path, replacement in paths:
                    shown = shown.replace(path, replacement)
                if shown == message:
                    raise
                raise GRPCError(error.status, shown, error.details) from None

        return handler

    async def _get_backend_info(self, stream: Any) -> None:
        request = await stream.recv_message()
        response = await self._backend.get_backend_info(request)
        added = [pb.Capability.AUTHENTICATION] if self._authenticates else []
        if self._roles:
            added.append(pb.Capability.ROLES)
        missing = [capability for capability in added if capability not in response.capabilities]
        if missing:
            response.capabilities = [*response.capabilities, *missing]
        await stream.send_message(response)


def _private_paths(backend: Backend) -> list[tuple[str, str]]:
    """``(path, what to say instead)`` for the backend's files, longest first."""
    path = getattr(backend, "path", None)
    if path is None:
        return []
    pairs = {}
    for form in (Path(path), Path(path).absolute()):
        pairs[str(form)] = "the server's database"
        if str(form.parent) not in (".", "/"):
            pairs[str(form.parent)] = "the server's data directory"
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


class BackendServer:
    """Serves ``backend`` on one listening socket until ``shutdown``.

    :param backend: any ``Backend`` (SQLite, another ``CloudBackend``, ...);
        the caller keeps ownership and closes it after shutdown.
    :param token: bearer token required on every call but health checks; ``None`` for none.
    :param credentials: instead of ``token``: tokens bound to roles (see ``authorization``).
    :param ssl_context: server TLS context (ALPN ``h2``), or ``None`` for plaintext h2c.
    :param max_request_bytes: the largest request message read; a larger one
        fails with ``RESOURCE_EXHAUSTED`` before its body is buffered.
    :param limits: connection count and timeouts (see ``connections``).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        token: str | None = None,
        credentials: dict[str, Principal] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ):
        self._ssl = ssl_context
        served = _ServedBackend(backend, authenticates=token is not None or bool(credentials), roles=bool(credentials))
        self._status = ServiceStatus()
        self._status.set(True)
        health = Health({OVERALL: [self._status], served: [self._status]})
        self._gate = CallGate(token, credentials=credentials)
        reader = RequestReader(served_pools(), max_request_bytes)
        self._server = GuardedServer(
            [
                GatedService(CheckedService(AuthorizedService(s), reader), self._gate)
                for s in with_reflection([served, health])
            ],
            limits=limits,
            # upb writes and parses the bytes: betterproto2's pure-Python wire format was most of a call's cost.
            codec=ContractCodec(),
        )
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
    credentials: dict[str, Principal] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    grace: float = DEFAULT_GRACE,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    limits: ConnectionLimits = DEFAULT_LIMITS,
    on_listening: Callable[[tuple[str, int]], Awaitable[None] | None] | None = None,
) -> None:
    """Serves ``backend`` on ``sock`` until SIGINT or SIGTERM, then shuts down gracefully.

    A second signal during shutdown stops waiting for calls in flight.

    :param on_listening: called with the address once the server accepts connections.
    """
    server = BackendServer(
        backend,
        token=token,
        credentials=credentials,
        ssl_context=ssl_context,
        max_request_bytes=max_request_bytes,
        limits=limits,
    )
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
