"""The remote path, CloudBackend -> ``stigmer server`` -> SQLite, next to a bare grpclib unary call.

    .venv/bin/python benchmarks/remote_path.py            # full run (~1 min)
    .venv/bin/python benchmarks/remote_path.py --quick    # smaller, for a smoke run

Measured in this one run, both servers in their own subprocess on loopback, the client in this
process, the two paths alternating round by round (medians over the rounds):

- **remote**: ``GetExecution`` of an existing execution through ``CloudBackend`` (bearer token,
  per-call deadline, retry wrapper, error translation) to a ``stigmer server`` subprocess (token
  check on every call, in-flight accounting, health and reflection registered) reading the SQLite
  file (``stigmer server --db``).
- **bare**: the same RPC with grpclib and nothing else: the generated ``BackendServiceStub`` on a
  ``Channel`` against a grpclib ``Server`` subprocess whose ``GetExecution`` returns the same
  execution, pre-built. Same message types, so the same bytes each way (the response size is
  printed); the client sends the same ``authorization`` header, which the bare server does not check.

Each is measured sequentially (one call in flight: latency-bound) and with 16 calls in flight
(throughput-bound). Goal: remote reaches at least 0.8 of bare. The stigmer server's peak resident
memory (``VmHWM`` in ``/proc/PID/status``) is read after all the load.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stigmer.backends.cloud import DEFAULT_TIMEOUT, CloudBackend
from stigmer.gen.stigmer.backend import v1 as pb
from stigmer.server.launch import LISTENING_PREFIX, ServerProcess

CONCURRENCY = 16


# -- the bare server (this script, run with --bare-server EXECUTION_HEX) ---------------------------


class ConstantBackend(pb.BackendServiceBase):
    """Answers ``GetExecution`` with one pre-built response: grpclib and the codec, nothing else."""

    def __init__(self, response: pb.GetExecutionResponse) -> None:
        self._response = response

    async def get_execution(self, message: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        return self._response


async def bare_server(response_hex: str) -> None:
    import signal

    from grpclib.server import Server

    from stigmer.server.startup import listening_socket

    server = Server([ConstantBackend(pb.GetExecutionResponse.parse(bytes.fromhex(response_hex)))])
    sock = listening_socket("127.0.0.1", 0)  # the same socket setup as stigmer server (TCP_NODELAY)
    await server.start(sock=sock)
    print(f"{LISTENING_PREFIX}127.0.0.1:{sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


# -- measuring ------------------------------------------------------------------------------------


async def calls_per_second(call, count: int, concurrency: int) -> float:
    """Runs ``count`` calls with ``concurrency`` in flight; calls per second."""
    per_worker = count // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - started)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


async def main(quick: bool) -> None:
    rounds, count = (3, 300) if quick else (7, 3000)
    token = secrets.token_hex(24)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "home").mkdir(mode=0o700)
        token_file = work / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
        env["STIGMER_HOME"] = str(work / "home")
        server = ServerProcess.start(["--db", str(work / "bench.db"), "--token-file", str(token_file)], env=env)
        bare = None
        remote = CloudBackend(server.endpoint, token=token)
        try:
            await remote.apply_agent_instance(
                pb.ApplyAgentInstanceRequest(
                    name="bench",
                    spec=pb.AgentInstanceSpec(
                        instructions="Answer briefly.", model=pb.ModelConfig(provider="ollama", model="llama3")
                    ),
                )
            )
            created = await remote.create_execution(
                pb.CreateExecutionRequest(
                    request_id="bench-1",
                    agent_instance=pb.AgentInstanceRef(name="bench"),
                    input=pb.ExecutionInput(message="Summarise the last release notes in three bullet points."),
                )
            )
            request = pb.GetExecutionRequest(execution_id=created.execution.id)
            response = await remote.get_execution(request)
            wire = bytes(response)

            bare = subprocess.Popen(
                [sys.executable, __file__, "--bare-server", wire.hex()], stdout=subprocess.PIPE, text=True
            )
            line = bare.stdout.readline().strip()
            assert line.startswith(LISTENING_PREFIX), line
            host, _, port = line[len(LISTENING_PREFIX) :].rpartition(":")

            from grpclib.client import Channel

            channel = Channel(host, int(port))
            stub = pb.BackendServiceStub(channel, metadata=[("authorization", f"Bearer {token}")])
            assert bytes(await stub.get_execution(request)) == wire

            async def remote_call() -> None:
                await remote.get_execution(request)

            async def bare_call() -> None:
                await stub.get_execution(request)

            async def bare_deadline_call() -> None:
                # The same per-call deadline CloudBackend sends: grpclib's own cost, on both ends.
                await stub.get_execution(request, timeout=DEFAULT_TIMEOUT)

            results: dict[tuple[str, int], list[float]] = {}
            for concurrency in (1, CONCURRENCY):
                # Warm both connections and code paths before timing.
                await calls_per_second(remote_call, 200, concurrency)
                await calls_per_second(bare_call, 200, concurrency)
                for _ in range(rounds):
                    for name, call in (("remote", remote_call), ("bare", bare_call), ("deadline", bare_deadline_call)):
                        rate = await calls_per_second(call, count, concurrency)
                        results.setdefault((name, concurrency), []).append(rate)
            channel.close()
            server_peak = peak_rss_mib(server.pid)
            bare_peak = peak_rss_mib(bare.pid)
        finally:
            await remote.aclose()
            server.close()
            if bare is not None:
                bare.terminate()
                bare.wait()

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; loopback, h2c")
    print(f"GetExecution response: {len(wire)} bytes; {rounds} rounds of {count} calls per path and setting")
    print()
    print(f"{'in flight':>9}  {'remote calls/s':>14}  {'bare calls/s':>12}  {'remote/bare':>11}  goal")
    for concurrency in (1, CONCURRENCY):
        remote_rate = statistics.median(results[("remote", concurrency)])
        bare_rate = statistics.median(results[("bare", concurrency)])
        ratio = remote_rate / bare_rate
        verdict = "met" if ratio >= 0.8 else "NOT met"
        print(f"{concurrency:>9}  {remote_rate:>14,.0f}  {bare_rate:>12,.0f}  {ratio:>11.3f}  >= 0.80 {verdict}")
    print()
    print("The same bare call given CloudBackend's per-call deadline (grpc-timeout), to separate")
    print("grpclib's deadline handling from the adapter and server:")
    print(f"{'in flight':>9}  {'bare+deadline/s':>15}  {'remote/bare+deadline':>20}")
    for concurrency in (1, CONCURRENCY):
        remote_rate = statistics.median(results[("remote", concurrency)])
        deadline_rate = statistics.median(results[("deadline", concurrency)])
        print(f"{concurrency:>9}  {deadline_rate:>15,.0f}  {remote_rate / deadline_rate:>20.3f}")
    print()
    print(f"peak RSS (VmHWM) after the load: stigmer server {server_peak:.1f} MiB,", end=" ")
    print(f"bare grpclib server {bare_peak:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a smoke run)")
    parser.add_argument("--bare-server", metavar="RESPONSE_HEX", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_server:
        asyncio.run(bare_server(arguments.bare_server))
    else:
        asyncio.run(main(arguments.quick))
