"""Reading a request off the wire: a size cap before anything is buffered, and a strict parse.

grpclib reads a whole message into memory whatever length its 5-byte prefix
declares, acknowledging each chunk so the client may send more: a 500 MB body
to ``Health`` was buffered whole, without a token. And betterproto2 decodes
leniently: a truncated field comes out cut short, a wrong wire type puts an
int in a string field, invalid UTF-8 or a 2^62 s duration raise whatever
Python raises. So every served method reads its request here instead:

- the declared length is checked before a byte of the body is read; a longer
  request fails with ``RESOURCE_EXHAUSTED`` (unread data stays unacknowledged,
  so HTTP/2 flow control stops the sender at one window);
- the body is parsed first by protobuf's own parser (upb), which refuses
  truncation, invalid UTF-8 and nesting past 100 levels; a known field number
  arriving with another wire type, or a ``Duration``/``Timestamp`` outside
  the range their definitions allow, is refused too; all of these fail with
  ``INVALID_ARGUMENT``, logged as one line, rate-limited.

Grpclib offers no hook for this (its ``recv_message`` is a module function
called by ``Stream.recv_message``), so ``install`` replaces that method on
each call's stream object, reusing the stream's own codec: the check works
with whatever codec the server uses.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from grpclib import GRPCError
from grpclib.const import Status

from .rate_limited_log import RateLimitedWarnings

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "CheckedService", "RequestReader", "check_wire"]

log = logging.getLogger("stigmer_backend.server")

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""The largest request message accepted, in bytes (the proto's documented default)."""

# google/protobuf/duration.proto and timestamp.proto state these ranges.
_MAX_DURATION_SECONDS = 315_576_000_000
_MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


class Malformed(Exception):
    """The request bytes are not a valid message of the method's request type."""


class RequestReader:
    """Installs the checked ``recv_message`` on each call's stream.

    :param pools: descriptor pools (``reflection.PoolChain``) that know every
        served service, to find each method's request type.
    :param max_bytes: the largest request message accepted.
    """

    def __init__(self, pools: Any, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._pools = pools
        self._classes: dict[str, Any] = {}
        self._warnings = RateLimitedWarnings(log)

    def _message_class(self, method: str) -> Any:
        cls = self._classes.get(method)
        if cls is None:
            service_name, _, method_name = method.strip("/").partition("/")
            service = self._pools.FindFileContainingSymbol(service_name).services_by_name[
                service_name.rpartition(".")[2]
            ]
            cls = message_factory.GetMessageClass(service.methods_by_name[method_name].input_type)
            self._classes[method] = cls
        return cls

    def install(self, method: str, stream: Any) -> None:
        """Makes ``stream.recv_message()`` read ``method``'s request through the checks."""
        cls = self._message_class(method)

        async def recv_message() -> Any:
            return await self._read(method, cls, stream)

        stream.recv_message = recv_message

    async def _read(self, method: str, cls: Any, stream: Any) -> Any:
        h2_stream = stream._stream
        prefix = await h2_stream.recv_data(5)
        if not prefix:
            return None
        if len(prefix) < 5:
            raise self._refuse(method, stream, "the request ended inside its length prefix")
        if prefix[0]:
            raise self._refuse(method, stream, "compressed requests are not supported", Status.UNIMPLEMENTED)
        length = int.from_bytes(prefix[1:5], "big")
        if length > self.max_bytes:
            raise self._refuse(
                method,
                stream,
                f"the request message is {length} bytes; this server accepts at most {self.max_bytes}",
                Status.RESOURCE_EXHAUSTED,
            )
        try:
            body = await h2_stream.recv_data(length)
        except AssertionError:  # grpclib's Buffer: the stream ended early
            body = b""
        if len(body) != length:
            raise self._refuse(method, stream, "the request ended before its message did")
        try:
            check_wire(cls, body)
            message = stream._codec.decode(body, stream._recv_type)
        except (Malformed, DecodeError) as problem:
            raise self._refuse(method, stream, f"malformed request message: {problem}") from None
        except (ValueError, TypeError, OverflowError, EOFError, RecursionError, KeyError, IndexError):
            raise self._refuse(method, stream, "malformed request message") from None
        # What grpclib's own recv_message counts (keepalive and cardinality checks read these).
        stream._messages_received += 1
        h2_stream.connection.messages_received += 1
        h2_stream.connection.last_message_received = time.monotonic()
        return message

    def _refuse(self, method: str, stream: Any, problem: str, status: Status = Status.INVALID_ARGUMENT) -> GRPCError:
        address = stream.peer.addr()
        peer = f"{address[0]}:{address[1]}" if address else "unknown peer"
        self._warnings.warn(f"refused {method} from {peer}: {problem}")
        return GRPCError(status, problem)


def check_wire(cls: Any, body: bytes) -> None:
    """Raises ``Malformed`` (or ``DecodeError``) unless ``body`` is a strictly valid ``cls`` message."""
    parsed = cls.FromString(body)
    pending = [parsed]
    while pending:
        message = pending.pop()
        descriptor: Descriptor = message.DESCRIPTOR
        unknown_fields = UnknownFieldSet(message)
        for index in range(len(unknown_fields)):
            field = descriptor.fields_by_number.get(unknown_fields[index].field_number)
            if field is not None:
                raise Malformed(f"field {field.name} arrived with the wrong wire type")
        _check_range(descriptor.full_name, message)
        for field, value in message.ListFields():
            if field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    pending.extend(value.values())
            elif field.is_repeated:
                pending.extend(value)
            else:
                pending.append(value)


def _check_range(full_name: str, message: Any) -> None:
    if full_name == "google.protobuf.Duration":
        seconds, nanos = message.seconds, message.nanos
        if abs(seconds) > _MAX_DURATION_SECONDS:
            raise Malformed(f"a duration of {seconds} seconds is out of range")
        if abs(nanos) >= 1_000_000_000 or (seconds and nanos and (seconds > 0) != (nanos > 0)):
            raise Malformed("a duration's nanos must be within ±999,999,999 and of the sign of its seconds")
    elif full_name == "google.protobuf.Timestamp":
        if not _MIN_TIMESTAMP_SECONDS <= message.seconds <= _MAX_TIMESTAMP_SECONDS:
            raise Malformed("a timestamp is outside years 1 to 9999")
        if not 0 <= message.nanos < 1_000_000_000:
            raise Malformed("a timestamp's nanos must be from 0 to 999,999,999")


class CheckedService:
    """A grpclib service (anything with ``__mapping__``) whose every method reads its request through ``reader``."""

    def __init__(self, service: Any, reader: RequestReader) -> None:
        self._service = service
        self._reader = reader

    def __mapping__(self) -> dict[str, Any]:
        return {
            method: handler._replace(func=self._checked(method, handler.func))
            for method, handler in self._service.__mapping__().items()
        }

    def _checked(self, method: str, func: Any) -> Any:
        install = self._reader.install

        async def checked(stream: Any) -> None:
            install(method, stream)
            await func(stream)

        return checked
