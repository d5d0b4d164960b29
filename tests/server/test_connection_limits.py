"""Connections that say nothing are closed, and there are never more than `--max-connections` open.

Before, silent and preface-only connections stayed open forever and 1,100 of
them exhausted the server's file descriptors, so health checks timed out.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from stigmer_backend.backends.wire import parse_endpoint
from stigmer_backend.server.launch import ServerProcess

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture
def strict(db_path, token_file, server_env) -> Iterator[ServerProcess]:
    args = ["--db", str(db_path), "--token-file", str(token_file), "--max-connections", "8", "--idle-timeout", "1"]
    with ServerProcess.start(args, env=server_env) as server:
        yield server


def _connect(server: ServerProcess) -> socket.socket:
    host, port = parse_endpoint(server.endpoint)
    return socket.create_connection((host, port), timeout=30)


def _closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes the connection (True) or 30 s pass (False)."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_silent_and_preface_only_connections_are_closed(strict):
    silent = _connect(strict)
    preface_only = _connect(strict)
    preface_only.sendall(PREFACE)
    try:
        assert _closed_by_server(silent), "a connection that sent nothing stayed open"
        assert _closed_by_server(preface_only), "a preface-only connection stayed open"
    finally:
        silent.close()
        preface_only.close()


async def test_idle_connections_beyond_the_cap_make_room_for_a_health_check(strict):
    before = _open_descriptors(strict.pid)
    idle = [_connect(strict) for _ in range(40)]
    try:
        for sock in idle:
            sock.sendall(PREFACE)
        host, port = parse_endpoint(strict.endpoint)
        channel = Channel(host, port)
        try:
            reply = await HealthStub(channel).Check(HealthCheckRequest(), timeout=10)
            assert reply.status == HealthCheckResponse.SERVING
        finally:
            channel.close()
        # At most 8 connections (and their descriptors), whatever the 40 do; +2 for sockets closed
        # but released by the server's event loop on its next turn. Without the cap: 41.
        assert _open_descriptors(strict.pid) - before <= 8 + 2
        assert "closed the idle connection" in strict.stderr_text()
    finally:
        for sock in idle:
            sock.close()
