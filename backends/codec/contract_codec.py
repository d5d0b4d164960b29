"""``ContractCodec``: grpclib's protobuf codec with Google's runtime (upb) doing the bytes.

The generated stubs and handlers keep passing betterproto2 messages; this
codec converts them to and from upb messages (``convert``) and lets upb
encode and parse, which costs a fraction of betterproto2's pure-Python
wire format. The bytes are the protobuf wire format either way, so a
client or server using any other codec (grpcio, buf curl, Go) is unaffected.

Messages that are not betterproto2's (grpclib's own health and reflection
services use Google's classes) go through grpclib's ``ProtoCodec`` as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import betterproto2
from google.protobuf.message import Message as GoogleMessage
from grpclib.encoding.proto import ProtoCodec

from .convert import from_google, google_class, to_google

if TYPE_CHECKING:
    from grpclib._typing import IProtoMessage

# What grpclib hands a codec: the contract's betterproto2 messages, or Google's (health, reflection).
AnyMessage: TypeAlias = "betterproto2.Message | IProtoMessage"

__all__ = ["ContractCodec"]


class ContractCodec(ProtoCodec):
    """Encodes and decodes betterproto2 messages with upb; other messages as ``ProtoCodec`` does."""

    def encode(self, message: AnyMessage, message_type: type[AnyMessage]) -> bytes:
        if isinstance(message, betterproto2.Message) != issubclass(message_type, betterproto2.Message):
            # One of ours for one of Google's, or the reverse: what grpclib's ProtoCodec says of any mismatch.
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        if not isinstance(message, betterproto2.Message) or not issubclass(message_type, betterproto2.Message):
            return super().encode(message, message_type)  # Google's classes
        if not isinstance(message, message_type):
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        return to_google(message).SerializeToString(deterministic=True)

    def decode(self, data: bytes, message_type: type[AnyMessage]) -> AnyMessage:
        if not issubclass(message_type, betterproto2.Message):
            return super().decode(data, message_type)
        parsed = google_class(message_type).FromString(data)
        size = parsed.ByteSize()
        parsed.DiscardUnknownFields()
        if parsed.ByteSize() != size:
            # Unknown fields (a newer peer's): betterproto2's parser keeps them on each message.
            return message_type.parse(data)
        return from_google(parsed, message_type)

    @staticmethod
    def upb_class(message_type: type[betterproto2.Message]) -> type[GoogleMessage]:
        """The upb class ``decode`` parses ``message_type``'s bytes with."""
        return google_class(message_type)

    @staticmethod
    def decode_parsed(parsed: GoogleMessage, message_type: type[betterproto2.Message]) -> betterproto2.Message:
        """What ``decode`` returns for bytes the caller has parsed already, as ``upb_class(message_type)``,
        and found free of unknown fields (bytes with some go to ``decode``, which keeps them)."""
        return from_google(parsed, message_type)
