"""A client of several ``stigmer server`` replicas, alternating call by call, as a load balancer would.

The conformance suite runs through it (``--target tests.postgres.replicas:from_environment``
with ``STIGMER_TEST_REPLICAS=host:port,host:port``), so consecutive calls of
one test — a write, then the read that checks it, a watch and the writes it
must see — reach different processes that share only the database.
"""

from __future__ import annotations

import itertools
import os

from grpclib.client import Channel

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["RoundRobin", "from_environment"]


class RoundRobin:
    """Each RPC goes to the next replica's generated stub."""

    def __init__(self, endpoints: list[str]) -> None:
        self._channels = []
        for endpoint in endpoints:
            host, _, port = endpoint.rpartition(":")
            self._channels.append(Channel(host.strip("[]"), int(port)))
        self._stubs = itertools.cycle([pb.BackendServiceStub(channel) for channel in self._channels])

    def __getattr__(self, name: str):
        if not hasattr(pb.BackendServiceStub, name) or name.startswith("_"):
            raise AttributeError(name)
        return getattr(next(self._stubs), name)

    async def aclose(self) -> None:
        for channel in self._channels:
            channel.close()


def from_environment() -> RoundRobin:
    return RoundRobin(os.environ["STIGMER_TEST_REPLICAS"].split(","))
