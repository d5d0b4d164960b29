"""``CloudBackend``: every RPC forwarded to a remote ``BackendService`` over grpclib.

As thin as the SQLite adapter: the generated ``BackendServiceStub`` does the
encoding; this class adds what a network needs and the contract allows —
TLS, the bearer token on every call, a per-call deadline, retries of the RPCs
the proto calls safe to repeat, and the translation of transport failures
into the contract's status codes (``transport_errors``). A ``CloudBackend``
is called exactly like ``SqliteBackend`` (it is a ``Backend``, whose methods
have the generated signatures) and could itself be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncGenerator, Callable

import betterproto2
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.metadata import Deadline

from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..base import Backend
from ..batched_writes import BatchingChannel
from ..codec import ContractCodec
from ..wire import authorization, client_ssl_context, format_endpoint, is_header_safe, parse_endpoint
from .retries import RetryPolicy, is_retry_safe, is_transient
from .transport_errors import transport_error
from .watch_channels import WatchChannels

__all__ = ["DEFAULT_TIMEOUT", "RPC_NAMES", "CloudBackend", "client_ssl_context"]

log = logging.getLogger("stigmer_backend.backends.cloud")

DEFAULT_TIMEOUT = 30.0
"""Seconds a unary call may take, retries included (the server's SQLite waits up to 30 s for a lock)."""

RPC_NAMES: tuple[str, ...] = tuple(
    name
    for name, member in vars(pb.BackendServiceBase).items()
    if not name.startswith("_") and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
)
"""Every RPC of the generated service base, as Python method names, in proto order."""


def _forwarding(name: str) -> Callable[..., object]:
    """The method ``name`` of ``CloudBackend``: the base's signature and docstring, the call sent over the wire."""
    base = getattr(pb.BackendServiceBase, name)
    rpc: Callable[..., object]
    if inspect.isasyncgenfunction(base):

        async def stream_rpc(
            self: CloudBackend, message: betterproto2.Message
        ) -> AsyncGenerator[betterproto2.Message, None]:
            # Closed explicitly, so a caller that stops early cancels the call now, not at garbage collection.
            async with contextlib.aclosing(self._stream(name, message)) as responses:
                async for response in responses:
                    yield response

        rpc = stream_rpc
    else:

        async def unary_rpc(self: CloudBackend, message: betterproto2.Message) -> betterproto2.Message:
            return await self._unary(name, message)

        rpc = unary_rpc

    functools.update_wrapper(rpc, base)
    rpc.__qualname__ = f"CloudBackend.{name}"
    return rpc


def _forward_every_rpc(cls: type[CloudBackend]) -> type[CloudBackend]:
    for name in RPC_NAMES:
        setattr(cls, name, _forwarding(name))
    return cls


@_forward_every_rpc
class CloudBackend(Backend):
    """``BackendService`` at a remote endpoint (for example ``stigmer server``).

    :param endpoint: ``HOST:PORT`` (IPv6 in brackets).
    :param token: bearer token sent as ``authorization: Bearer <token>`` on
        every call (printable ASCII, no spaces, else ``ValueError``); ``None``
        sends none (for a server without authentication).
    :param tls: use TLS, verifying the server against the system trust store.
    :param ca_file: PEM file of the CA(s) to trust instead; implies ``tls``.
        With neither, the connection is plaintext (h2c, as grpclib's default):
        for a loopback server or a trusted network only.
    :param timeout: seconds a unary call may take in all, retries included;
        ``None`` for no deadline. ``WatchExecution`` is not bound by it.
    :param watch_timeout: seconds a ``WatchExecution`` may last; default no limit.
    :param retry: how retry-safe calls are repeated after ``UNAVAILABLE``.

    Every RPC raises ``GRPCError`` with the contract's status codes: the
    server's own, ``DEADLINE_EXCEEDED`` when the deadline passes on this side,
    ``UNAVAILABLE`` naming the endpoint when it cannot be reached. The
    connection is made on the first call and remade after a break.
    """

    kind = "cloud"

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        watch_timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._host, self._port = parse_endpoint(endpoint)
        self.endpoint = format_endpoint(self._host, self._port)
        if token is not None and not is_header_safe(token):
            raise ValueError("the token must be printable ASCII without spaces")
        self._ssl = client_ssl_context(ca_file) if tls or ca_file else None
        self._metadata = (("authorization", authorization(token)),) if token else None
        self._timeout = timeout
        self._watch_timeout = watch_timeout
        self._retry = retry or RetryPolicy()
        self._channel: Channel | None = None
        self._stub_instance: pb.BackendServiceStub | None = None
        # Streams on connections of their own, so open watches never hold up unary calls.
        self._watch_channels = WatchChannels(
            lambda: BatchingChannel(self._host, self._port, ssl=self._ssl, codec=ContractCodec())
        )
        self._closed = False

    def __repr__(self) -> str:
        # The token stays out: reprs end up in logs and tracebacks.
        scheme = "h2c" if self._ssl is None else "tls"
        return f"CloudBackend({self.endpoint!r}, {scheme}, token={'yes' if self._metadata else 'no'})"

    async def aclose(self) -> None:
        self._closed = True
        self._watch_channels.close()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub_instance = None

    @property
    def _stub(self) -> pb.BackendServiceStub:
        self._refuse_if_closed()
        if self._stub_instance is None:
            # Made on first use, inside the running loop that grpclib binds the channel to.
            # upb writes and parses the bytes (``codec``); callers still get betterproto2 messages.
            self._channel = BatchingChannel(self._host, self._port, ssl=self._ssl, codec=ContractCodec())
            self._stub_instance = pb.BackendServiceStub(self._channel)
        return self._stub_instance

    def _refuse_if_closed(self) -> None:
        if self._closed:
            # Raised outside any retry loop: a closed backend stays closed.
            raise GRPCError(Status.UNAVAILABLE, f"the backend for {self.endpoint} is closed")

    def _reported(self, raised: Exception, rpc: str) -> GRPCError:
        """``raised`` as the contract's ``GRPCError`` (see ``transport_errors``); anything else is a bug: re-raised."""
        error = transport_error(raised, self.endpoint, rpc)
        if error is None:
            raise raised
        return error

    def _next_wait(self, rpc: str, error: GRPCError, attempt: int, deadline: Deadline | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` if ``error`` is final."""
        if attempt >= self._retry.max_attempts or not is_transient(error) or not is_retry_safe(rpc):
            return None
        wait = self._retry.backoff(attempt)
        if deadline is not None and deadline.time_remaining() <= wait:
            return None
        log.info("%s to %s failed (%s); attempt %d in %.2fs", rpc, self.endpoint, error.message, attempt + 1, wait)
        return wait

    async def _unary(self, rpc: str, message: betterproto2.Message) -> betterproto2.Message:
        method = getattr(self._stub, rpc)
        deadline = Deadline.from_timeout(self._timeout) if self._timeout is not None else None
        attempt = 1
        while True:
            try:
                response: betterproto2.Message = await method(message, deadline=deadline, metadata=self._metadata)
                return response
            except Exception as raised:
                error = self._reported(raised, rpc)
                wait = self._next_wait(rpc, error, attempt, deadline)
                if wait is None:
                    raise error from error.__cause__
            await asyncio.sleep(wait)
            attempt += 1

    async def _stream(self, rpc: str, message: betterproto2.Message) -> AsyncGenerator[betterproto2.Message, None]:
        """A server stream, retried only until its first message.

        Once messages have been delivered a repeat would deliver them again,
        breaking the contract's "each exactly once"; the caller gets the
        ``UNAVAILABLE`` and watches again, knowing what it has seen.
        """
        self._refuse_if_closed()
        deadline = Deadline.from_timeout(self._watch_timeout) if self._watch_timeout is not None else None
        attempt = 1
        with self._watch_channels.stub() as stub:
            method = getattr(stub, rpc)
            while True:
                delivered = False
                try:
                    async with contextlib.aclosing(
                        method(message, deadline=deadline, metadata=self._metadata)
                    ) as responses:
                        async for response in responses:
                            delivered = True
                            yield response
                    return
                except Exception as raised:
                    error = self._reported(raised, rpc)
                    wait = None if delivered else self._next_wait(rpc, error, attempt, deadline)
                    if wait is None:
                        raise error from error.__cause__
                await asyncio.sleep(wait)
                attempt += 1
