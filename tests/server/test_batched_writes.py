"""A request's frames leave as one socket write, unchanged and in order (``backends/batched_writes``).

Checked on real loopback sockets: the transport wrapper alone, then a unary call through
``BackendServer`` and ``CloudBackend``, whose request (headers, message) leaves the client in one
write, while the server writes the response's frames as grpclib makes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame

from stigmer_backend.backends import batched_writes
from stigmer_backend.backends.batched_writes import BatchedWrites, ends_a_stream
from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.backend_server import BackendServer
from stigmer_backend.server.startup import listening_socket


class _Counted(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport


@pytest.fixture
async def connected() -> AsyncIterator[tuple[BatchedWrites, list[bytes], asyncio.StreamReader]]:
    """A loopback TCP connection: the client's transport wrapped, the writes that reached it, the server's reader."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, protocol = await asyncio.get_running_loop().create_connection(_Counted, "127.0.0.1", port)
    transport = protocol.transport
    written: list[bytes] = []
    real_write = transport.write

    def write(data: bytes | bytearray | memoryview) -> None:
        written.append(bytes(data))
        real_write(data)

    transport.write = write  # type: ignore[method-assign]  # counts what reaches the real transport
    reader, writer = await accepted.get()
    try:
        yield BatchedWrites(transport), written, reader
    finally:
        transport.abort()
        writer.close()
        server.close()
        await server.wait_closed()


async def test_writes_of_one_step_reach_the_transport_as_one(
    connected: tuple[BatchedWrites, list[bytes], asyncio.StreamReader],
) -> None:
    batched, written, reader = connected
    batched.write(b"headers ")
    batched.write(bytearray(b"message "))
    batched.writelines([b"trail", memoryview(b"ers")])
    assert written == []  # nothing sent inside the step
    assert batched.get_write_buffer_size() >= len(b"headers message trailers")
    assert await reader.readexactly(len(b"headers message trailers")) == b"headers message trailers"
    assert written == [b"headers message trailers"]

    batched.write(b"next step")
    assert await reader.readexactly(len(b"next step")) == b"next step"
    assert written == [b"headers message trailers", b"next step"]


async def test_the_frame_that_ends_a_stream_sends_what_is_pending_at_once(
    connected: tuple[BatchedWrites, list[bytes], asyncio.StreamReader],
) -> None:
    batched, written, reader = connected
    headers = HeadersFrame(1, data=b"\x88", flags=["END_HEADERS"]).serialize()
    message = DataFrame(1, data=b"\x00\x00\x00\x00\x02hi").serialize()
    trailers = HeadersFrame(1, data=b"\x88", flags=["END_HEADERS", "END_STREAM"]).serialize()
    batched.write(headers)
    batched.write(message)
    assert written == []
    batched.write(trailers)
    assert written == [headers + message + trailers]  # within the step, not at its end
    assert await reader.readexactly(len(written[0])) == written[0]


def test_which_frames_end_a_stream() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 22}).serialize()
    request = HeadersFrame(1, data=b"\x83\x86", flags=["END_HEADERS"]).serialize()
    assert not ends_a_stream(preface + settings)
    assert not ends_a_stream(settings + request + DataFrame(1, data=b"x").serialize())
    assert ends_a_stream(request + DataFrame(1, data=b"x", flags=["END_STREAM"]).serialize())
    assert ends_a_stream(HeadersFrame(3, data=b"\x88", flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert ends_a_stream(preface + settings + request + DataFrame(1, flags=["END_STREAM"]).serialize())


async def test_close_sends_what_is_pending(
    connected: tuple[BatchedWrites, list[bytes], asyncio.StreamReader],
) -> None:
    batched, written, reader = connected
    batched.write(b"goaway")
    batched.close()
    assert written == [b"goaway"]
    assert await reader.read() == b"goaway"  # then end of stream
    assert batched.is_closing()


async def test_abort_drops_what_is_pending(connected: tuple[BatchedWrites, list[bytes], asyncio.StreamReader]) -> None:
    batched, written, reader = connected
    batched.write(b"never sent")
    batched.abort()
    assert written == []
    try:
        assert await reader.read() == b""
    except ConnectionResetError:
        pass


async def test_a_request_leaves_in_one_write_and_the_response_frame_by_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes: list[tuple[BatchedWrites, int]] = []
    flush = BatchedWrites._flush

    def counted_flush(self: BatchedWrites) -> None:
        if self._pending:
            flushes.append((self, len(self._pending)))
        flush(self)

    monkeypatch.setattr(batched_writes.BatchedWrites, "_flush", counted_flush)
    backend = SqliteBackend(tmp_path / "served.db")
    server = BackendServer(backend, token="t" * 32)
    await server.start(listening_socket("127.0.0.1", 0))
    client = CloudBackend(f"127.0.0.1:{server.address[1]}", token="t" * 32)
    try:
        await client.get_backend_info(pb.GetBackendInfoRequest())  # the connection's settings exchange
        flushes.clear()
        info = await client.get_backend_info(pb.GetBackendInfoRequest())
        assert pb.Capability.AUTHENTICATION in info.capabilities
        # The client's request (headers, message) in one write; the server joins nothing, so the
        # client can start on the response's headers and message before its trailers are written.
        assert [frames for _, frames in flushes] == [2]
        assert client._channel is not None and client._channel._protocol is not None
        assert flushes[0][0] is client._channel._protocol.connection._transport
    finally:
        await client.aclose()
        await server.shutdown(1)
        await backend.aclose()
