"""Connections for ``WatchExecution`` streams, apart from the one unary calls use.

An HTTP/2 server caps the streams open at once on one connection (grpclib's
server, like many proxies, at 100), and grpclib's client waits for a free
slot before it sends. With watches on the unary connection, 100 open watches
made every ``GetExecution`` wait for one of them to end (``DEADLINE_EXCEEDED``
after 3 s), and the 101st watch waited too. So watches get connections of
their own, at most ``STREAMS_PER_CHANNEL`` each, opened as needed; an empty
one is closed unless it is the last.

Chosen over raising the server's stream limit (which only moves the cliff,
reaches into grpclib's private protocol setup, and does not help against
another server or a proxy), and over multiplexing several executions on one
stream (a contract change).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from grpclib.client import Channel

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["STREAMS_PER_CHANNEL", "WatchChannels"]

STREAMS_PER_CHANNEL = 64
"""Watches per connection: well under the common limit of 100, so a slot is always free."""


class _Slot:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.stub = pb.BackendServiceStub(channel)
        self.streams = 0


class WatchChannels:
    """A growing set of connections for streams.

    :param open_channel: makes a new (not yet connected) ``Channel`` to the endpoint.
    """

    def __init__(self, open_channel: Callable[[], Channel]) -> None:
        self._open_channel = open_channel
        self._slots: list[_Slot] = []

    @property
    def channels(self) -> int:
        """Connections open now (for tests and benchmarks)."""
        return len(self._slots)

    @contextlib.contextmanager
    def stub(self) -> Iterator[pb.BackendServiceStub]:
        """A stub on a connection with a free stream slot, held until the block ends."""
        slot = next((slot for slot in self._slots if slot.streams < STREAMS_PER_CHANNEL), None)
        if slot is None:
            slot = _Slot(self._open_channel())
            self._slots.append(slot)
        slot.streams += 1
        try:
            yield slot.stub
        finally:
            slot.streams -= 1
            if not slot.streams and len(self._slots) > 1 and slot in self._slots:
                self._slots.remove(slot)
                slot.channel.close()

    def close(self) -> None:
        for slot in self._slots:
            slot.channel.close()
        self._slots.clear()
