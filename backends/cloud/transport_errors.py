"""What a failure below gRPC becomes: the status codes the contract promises, in one place.

The SQLite backend and a remote one must fail alike, so a caller never sees a
socket error, an h2 error or a bare ``asyncio.TimeoutError`` from a
``CloudBackend``: a deadline spent on the client side is
``DEADLINE_EXCEEDED`` (as when the server notices it first), and a connection
that cannot be made or breaks is ``UNAVAILABLE`` naming the endpoint.
``GRPCError`` from the server passes through untouched.
"""

from __future__ import annotations

import asyncio
import ssl

import h2.exceptions
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.exceptions import ProtocolError, StreamTerminatedError

__all__ = ["transport_error"]


def transport_error(error: Exception, endpoint: str, rpc: str) -> GRPCError | None:
    """The ``GRPCError`` that reports ``error``, or ``None`` if it is not a transport failure (a bug: re-raise it).

    :param error: what the call raised; a ``GRPCError`` is returned as it is.
    :param endpoint: ``HOST:PORT``, named in the message so the user knows what was unreachable.
    :param rpc: the RPC's name, for the deadline message.

    The original exception becomes ``__cause__`` (``retries.is_transient``
    looks at it); only its text reaches the message, and no token is in it.
    """
    if isinstance(error, GRPCError):
        return error
    # TimeoutError first: it is an OSError subclass, and a deadline is not a broken connection.
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        translated = GRPCError(Status.DEADLINE_EXCEEDED, f"{rpc} got no answer from {endpoint} in time")
    elif isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or "verification failed"
        translated = GRPCError(
            Status.UNAVAILABLE,
            f"{endpoint} unreachable: its TLS certificate is not trusted ({reason}); give the CA that signed it",
        )
    elif isinstance(error, ssl.SSLError):
        reason = error.reason or str(error)
        translated = GRPCError(Status.UNAVAILABLE, f"{endpoint} unreachable: TLS failed ({reason}); does it use TLS?")
    elif isinstance(error, OSError | StreamTerminatedError | ProtocolError | h2.exceptions.H2Error | EOFError):
        translated = GRPCError(Status.UNAVAILABLE, f"{endpoint} unreachable: {_describe(error)}")
    else:
        return None
    translated.__cause__ = error
    return translated


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
