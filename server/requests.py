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

With ``ContractCodec`` (upb under betterproto2) that one parse is also the
decoding: the checked upb message is converted, not parsed a second time.

Grpclib offers no hook for this (its ``recv_message`` is a module function
called by ``Stream.recv_message``), so ``install`` replaces that method on
each call's stream object, reusing the stream's own codec: the check works
with whatever codec the server uses.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import betterproto2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.codec import ContractCodec

from .rate_limited_log import RateLimitedWarnings

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "CheckedService", "RequestReader", "check_wire"]

log = logging.getLogger("stigmer_backend.server")

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""The largest request message accepted, in bytes (the proto's documented default)."""

# google/protobuf/duration.proto and timestamp.proto state these ranges.
_MAX_DURATION_SECONDS = 315_576_000_000
_MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_RANGED = frozenset({"google.protobuf.Duration", "google.protobuf.Timestamp"})


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
        # The checked upb message is the decoded one when the codec would have parsed the same class.
        recv_type = stream._recv_type
        converts = (
            isinstance(stream._codec, ContractCodec)
            and issubclass(recv_type, betterproto2.Message)
            and stream._codec.upb_class(recv_type) is cls
        )

        async def recv_message() -> Any:
            return await self._read(method, cls, stream, converts)

        stream.recv_message = recv_message

    async def _read(self, method: str, cls: Any, stream: Any, converts: bool) -> Any:
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
            parsed, unknown = _checked_parse(cls, body)
            if converts and not unknown:
                message = stream._codec.decode_parsed(parsed, stream._recv_type)
            else:  # unknown fields (a newer peer's) are the codec's to keep
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
    _checked_parse(cls, body)


def _checked_parse(cls: Any, body: bytes) -> tuple[Any, bool]:
    """``body`` parsed as ``cls`` and checked as ``check_wire`` does; with whether it holds unknown fields.

    Most requests hold none (upb files a known field with the wrong wire type
    as unknown too): one size comparison tells, and then only the fields that
    can hold a ``Duration`` or ``Timestamp`` are walked, for their ranges.
    """
    parsed = cls.FromString(body)
    size = parsed.ByteSize()
    parsed.DiscardUnknownFields()
    if parsed.ByteSize() == size:
        _check_ranges(parsed)
        return parsed, False
    parsed = cls.FromString(body)  # the unknown fields back, to name a misplaced one
    _check_all(parsed)
    return parsed, True


def _check_all(parsed: Any) -> None:
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


def _check_ranges(parsed: Any) -> None:
    pending = [parsed]
    while pending:
        message = pending.pop()
        descriptor: Descriptor = message.DESCRIPTOR
        _check_range(descriptor.full_name, message)
        ranged = _ranged_fields(descriptor)
        if not ranged:
            continue
        for field, value in message.ListFields():
            kind = ranged.get(field.number)
            if kind is None:
                continue
            if kind == "map":
                pending.extend(value.values())
            elif kind == "repeated":
                pending.extend(value)
            else:
                pending.append(value)


_ranged_by_type: dict[str, dict[int, str]] = {}


def _ranged_fields(descriptor: Descriptor) -> dict[int, str]:
    """``{field number: "map" | "repeated" | "single"}`` for the fields of ``descriptor`` whose
    messages can hold a ``Duration`` or ``Timestamp`` (themselves, or somewhere inside)."""
    found = _ranged_by_type.get(descriptor.full_name)
    if found is None:
        for reached in _reaching(descriptor):
            _ranged_by_type.setdefault(reached.full_name, _ranged_plan(reached))
        found = _ranged_by_type[descriptor.full_name]
    return found


def _held_message(field: FieldDescriptor) -> tuple[Descriptor, str] | None:
    """The message type ``field`` holds (a map's value type for a map), and how: "map", "repeated" or "single"."""
    held = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    if held is None:
        return None
    if held.GetOptions().map_entry:
        value_field = held.fields_by_name["value"]
        value = value_field.message_type if value_field.type == FieldDescriptor.TYPE_MESSAGE else None
        return None if value is None else (value, "map")
    return held, "repeated" if field.is_repeated else "single"


def _reaching(root: Descriptor) -> list[Descriptor]:
    """Every message type under ``root`` (``root`` included)."""
    seen = {root.full_name: root}
    pending = [root]
    while pending:
        for field in pending.pop().fields:
            held = _held_message(field)
            if held is not None and held[0].full_name not in seen:
                seen[held[0].full_name] = held[0]
                pending.append(held[0])
    return list(seen.values())


def _ranged_plan(descriptor: Descriptor) -> dict[int, str]:
    plan = {}
    for field in descriptor.fields:
        held = _held_message(field)
        if held is not None and _holds_ranged(held[0]):
            plan[field.number] = held[1]
    return plan


def _holds_ranged(descriptor: Descriptor) -> bool:
    return any(reached.full_name in _RANGED for reached in _reaching(descriptor))


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
