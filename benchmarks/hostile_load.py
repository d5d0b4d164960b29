"""What hostile load does to a running ``stigmer server``: memory, a held SQLite lock, idle connections.

    .venv/bin/python benchmarks/hostile_load.py                      # this checkout's server
    .venv/bin/python benchmarks/hostile_load.py --stigmer OTHER/stigmer --only rss stall

Each section starts its own server (the real ``stigmer server`` command, on a
free loopback port, with a token file and its own database) and prints what it
measured; ``--stigmer`` points at another build's command, so an older one can
be measured by the same client code in the same way:

(rss)   four request bodies of ``--body-mib`` MiB (default 500) sent at once to
        ``Health`` without a token, each on its own connection: the server's
        peak RSS (``VmHWM``) and its RSS afterwards, next to its RSS before;
        then one 100 MiB ``PutSecret`` with the token, and the peak after it.
(stall) another process holds SQLite's write lock (``BEGIN IMMEDIATE``) for
        ``--hold`` seconds while a ``CreateExecution`` sent to the server waits
        for it; ``Health`` is called one after another meanwhile: p50 and max
        latency, whether the write was still waiting when they were done, and
        how long a ``GetExecution`` sent then took (it reads the same file).
(idle)  ``--idle`` connections that send the HTTP/2 preface and then nothing,
        against a server whose descriptor limit is 1,024 (a common default):
        how long a ``Health`` call then takes, how many of the connections the
        server closed, and how many descriptors it holds.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import StreamTerminatedError

from stigmer_backend.gen.stigmer.backend import v1 as pb

HEALTH = "/grpc.health.v1.Health/Check"
SERVICE = "/stigmer.backend.v1.BackendService/"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SPEC = pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3"))

_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


class _Bytes(CodecBase):
    """Request and reply bytes passed through unparsed."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    db: Path
    token: str

    def status(self, field: str) -> int:
        """A ``/proc/PID/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field}")

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def channel(self) -> Channel:
        return Channel(self.host, self.port, codec=_Bytes())


@contextmanager
def serving(stigmer: str, directory: Path, *, nofile: int | None = None) -> Iterator[Server]:
    token = secrets.token_hex(16)
    token_file = directory / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    home = directory / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    db = directory / "served.db"
    limit = None if nofile is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
    process = subprocess.Popen(
        [stigmer, "server", "--port", "0", "--db", str(db), "--token-file", str(token_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        preexec_fn=limit,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the server did not start: {line!r}")
        host, _, port = line.split()[-1].rpartition(":")
        yield Server(process, host, int(port), db, token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def call(
    channel: Channel, method: str, body: bytes, *, token: str | None = None, timeout: float = 60.0
) -> tuple[str, bytes | None]:
    """``(status name, reply)`` of one unary call with ``body`` as its request message."""
    metadata = {"authorization": f"Bearer {token}"} if token else None
    try:
        async with channel.request(
            method, Cardinality.UNARY_UNARY, bytes, bytes, timeout=timeout, metadata=metadata
        ) as stream:
            try:
                await stream.send_message(body, end=True)
            except StreamTerminatedError:  # refused while the body was still being sent
                await stream.recv_initial_metadata()
                await stream.recv_trailing_metadata()
                raise
            return "OK", await stream.recv_message()
    except GRPCError as error:
        return error.status.name, None
    except StreamTerminatedError:
        return "reset", None
    except TimeoutError:
        return "timeout", None


async def rss(server: Server, body_mib: int) -> None:
    before = server.status("VmRSS")
    body = bytes(body_mib << 20)
    channels = [server.channel() for _ in range(4)]
    started = time.perf_counter()
    try:
        answers = await asyncio.gather(*(call(channel, HEALTH, body, timeout=600) for channel in channels))
    finally:
        for channel in channels:
            channel.close()
    elapsed = time.perf_counter() - started
    del body
    peak, after = server.status("VmHWM"), server.status("VmRSS")
    channel = server.channel()
    try:
        health, _ = await call(channel, HEALTH, b"")
        secret = bytes(pb.PutSecretRequest(name="BIG", value="x" * (100 << 20)))
        put, _ = await call(channel, SERVICE + "PutSecret", secret, token=server.token, timeout=600)
    finally:
        channel.close()
    print(
        f"(rss) 4 x {body_mib} MiB to Health, no token: answers {sorted(status for status, _ in answers)} "
        f"in {elapsed:.1f} s; server RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, "
        f"after {after / 1024:.0f} MiB; a Health call afterwards: {health}"
    )
    print(
        f"(rss) then a 100 MiB PutSecret with the token: {put}; server peak RSS {server.status('VmHWM') / 1024:.0f} MiB"
    )


async def stall(server: Server, hold: float, calls: int) -> None:
    channel = server.channel()
    try:
        apply = bytes(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        status, _ = await call(channel, SERVICE + "ApplyAgentInstance", apply, token=server.token)
        assert status == "OK", status
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(server.db), str(hold)], stdout=subprocess.PIPE)
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        locked = time.perf_counter()
        create = bytes(
            pb.CreateExecutionRequest(
                request_id="stalled",
                agent_instance=pb.AgentInstanceRef(name="helper"),
                input=pb.ExecutionInput(message="hi"),
            )
        )
        write = asyncio.ensure_future(call(channel, SERVICE + "CreateExecution", create, token=server.token))
        await asyncio.sleep(0.2)  # let the write reach the server and meet the lock
        latencies, statuses = [], set()
        for _ in range(calls):
            started = time.perf_counter()
            status, _ = await call(channel, HEALTH, b"", timeout=hold * 3)
            latencies.append(time.perf_counter() - started)
            statuses.add(status)
        measured_until = time.perf_counter() - locked
        waiting = not write.done()
        started = time.perf_counter()
        read = bytes(pb.GetExecutionRequest(execution_id="exe_00000000000000000000000000"))
        got, _ = await call(channel, SERVICE + "GetExecution", read, token=server.token, timeout=hold * 3)
        read_took = time.perf_counter() - started
        written, _ = await write
        write_took = time.perf_counter() - locked
        holder.wait()
    finally:
        channel.close()
    print(
        f"(stall) {calls} Health calls while a write waited for a {hold:.0f} s lock held by another process: "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, answers "
        f"{sorted(statuses)}; done {measured_until:.2f} s after the lock was taken, the write still waiting "
        f"then: {waiting}; the write answered {written} after {write_took:.1f} s; a GetExecution sent then "
        f"answered {got} after {read_took:.2f} s"
    )


async def idle(server: Server, count: int) -> None:
    before = server.descriptors()
    sockets: list[socket.socket] = []
    refused = 0
    for _ in range(count):
        try:
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sock.sendall(PREFACE)
            sockets.append(sock)
        except OSError:
            refused += 1
    held = server.descriptors()
    channel = server.channel()
    started = time.perf_counter()
    try:
        health, _ = await call(channel, HEALTH, b"", timeout=15)
    finally:
        channel.close()
    took = time.perf_counter() - started
    closed = sum(_closed_by_server(sock) for sock in sockets)
    print(
        f"(idle) {count} preface-only connections ({refused} refused), server descriptor limit 1024: "
        f"Health then answered {health} in {took * 1000:.0f} ms; the server closed {closed} of them and held "
        f"{held} descriptors (before: {before})"
    )


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (what it sent before, such as its SETTINGS, is skipped)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    finally:
        sock.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stigmer", default=str(Path(sys.executable).with_name("stigmer")), help="the command")
    parser.add_argument("--only", nargs="+", choices=("rss", "stall", "idle"), default=("rss", "stall", "idle"))
    parser.add_argument("--body-mib", type=int, default=500, help="MiB per body in (rss) (default 500)")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds the lock is held in (stall) (default 5)")
    parser.add_argument("--calls", type=int, default=200, help="Health calls in (stall) (default 200)")
    parser.add_argument("--idle", type=int, default=1100, help="connections in (idle) (default 1100)")
    args = parser.parse_args()
    print(f"stigmer server: {args.stigmer}")
    for section in args.only:
        with tempfile.TemporaryDirectory(prefix="stigmer-hostile-") as tmp:
            with serving(args.stigmer, Path(tmp), nofile=1024 if section == "idle" else None) as server:
                if section == "rss":
                    await rss(server, args.body_mib)
                elif section == "stall":
                    await stall(server, args.hold, args.calls)
                else:
                    await idle(server, args.idle)


if __name__ == "__main__":
    asyncio.run(main())
