"""Calls that carry arbitrary bytes as the request message, to test what the server does with them.

``raw_call`` sends ``body`` as the one request message of ``method`` and
returns the status the server answered with (``Status.OK`` and the reply's
bytes when it succeeded), through grpclib with a codec that passes bytes
unchanged, so nothing on our side parses or fixes the payload.
"""

from __future__ import annotations

from typing import Any

from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import StreamTerminatedError

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVICE = "/stigmer.backend.v1.BackendService/"


class RawCodec(CodecBase):
    """Bytes in, bytes out: ``content-type: application/grpc+proto`` without any parsing."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def raw_channel(endpoint: str) -> Channel:
    host, _, port = endpoint.rpartition(":")
    return Channel(host, int(port), codec=RawCodec())


async def raw_call(
    channel: Channel,
    method: str,
    body: bytes,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    streaming: bool = False,
) -> tuple[Status, Any]:
    """``(status, detail)`` the server answered ``body`` with: the reply's bytes on ``OK``, else the message.

    A server that refuses the request before reading all of it resets the
    stream while the body is still being sent; the status is then read from
    the trailers it sent first.
    """
    metadata = {"authorization": f"Bearer {token}"} if token else None
    try:
        cardinality = Cardinality.UNARY_STREAM if streaming else Cardinality.UNARY_UNARY
        async with channel.request(method, cardinality, bytes, bytes, timeout=timeout, metadata=metadata) as stream:
            try:
                await stream.send_message(body, end=True)
            except StreamTerminatedError:
                await stream.recv_initial_metadata()
                await stream.recv_trailing_metadata()
                raise
            if streaming:
                return Status.OK, [message async for message in stream]
            answer = await stream.recv_message()
            return Status.OK, answer
    except GRPCError as error:
        return error.status, error.message
