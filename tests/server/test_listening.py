"""Where ``stigmer server`` listens, what it prints, and that small calls are not held back by Nagle."""

from __future__ import annotations

import socket
import statistics
import time

import pytest

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from stigmer_backend.server.startup import is_loopback, listening_socket


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False)],
)
def test_loopback_is_decided_from_the_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_the_listening_socket_says_tcp_so_asyncio_disables_nagle():
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP


async def test_ipv6_loopback_is_served_and_printed_in_brackets(server_env, token_file, token, tmp_path):
    args = ["--host", "::1", "--token-file", str(token_file), "--db", str(tmp_path / "v6.db")]
    with ServerProcess.start(args, env=server_env) as server:
        assert server.endpoint.startswith("[::1]:")
        async with CloudBackend(server.endpoint, token=token) as backend:
            assert (await backend.get_backend_info(pb.GetBackendInfoRequest())).contract_version == "1.0"


async def test_sequential_small_calls_are_not_delayed_by_nagle_and_delayed_acks(served, token):
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.get_backend_info(pb.GetBackendInfoRequest())
        durations = []
        for _ in range(30):
            started = time.perf_counter()
            await backend.get_backend_info(pb.GetBackendInfoRequest())
            durations.append(time.perf_counter() - started)
    # With Nagle's algorithm on, each response waits for the client's delayed ACK: about 40 ms.
    assert statistics.median(durations) < 0.02
