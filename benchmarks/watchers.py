"""Watchers: write throughput with idle watchers on a server, and write-to-watcher latency.

- writes/s through ``stigmer server`` (sequential progress updates of one execution) with 0, 100
  and 500 idle ``WatchExecution`` streams on other executions; baseline: 0 watchers, same round.
- GetExecution calls/s on the client that carries those watches, against the same with none
  (100 watch streams on one connection used to make unary calls wait for a free stream).
- latency from the start of a write to a watcher of that execution receiving the new version,
  in-process (``SqliteBackend``) and remote (``CloudBackend`` -> server); baseline: the write
  call's own duration, same writes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from pathlib import Path

from sqlite_throughput import AGENT

from stigmer_backend.backends.base import Backend
from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess

__all__ = ["Served", "peak_rss_mib", "watch_latency", "writes_with_watchers"]

RUNNER = "bench-runner"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


class Served:
    """``stigmer server`` on a fresh database in ``directory``, with a token."""

    def __init__(self, directory: Path) -> None:
        self.token = secrets.token_hex(24)
        home = directory / "server-home"
        home.mkdir(mode=0o700)
        token_file = directory / "server-token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
        env["STIGMER_HOME"] = str(home)
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={home}/no-dbus-here"
        self.process = ServerProcess.start(
            ["--db", str(directory / "served.db"), "--token-file", str(token_file)], env=env
        )

    def client(self) -> CloudBackend:
        return CloudBackend(self.process.endpoint, token=self.token)

    def close(self) -> None:
        self.process.close()


async def _executions(backend: Backend, count: int, tag: str) -> list[str]:
    await backend.apply_agent_instance(AGENT)
    ids = []
    for i in range(count):
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id=f"{tag}-{i}",
                agent_instance=pb.AgentInstanceRef(name="bench"),
                input=pb.ExecutionInput(message="x"),
            )
        )
        ids.append(created.execution.id)
    return ids


def _progress(execution_id: str, n: int) -> pb.UpdateExecutionStatusRequest:
    return pb.UpdateExecutionStatusRequest(
        execution_id=execution_id, phase=pb.ExecutionPhase.RUNNING, runner_id=RUNNER, message=f"step {n}"
    )


async def _open_watches(backend: Backend, ids: list[str]) -> list[asyncio.Task]:
    opened = [asyncio.Event() for _ in ids]

    async def watch(execution_id: str, first: asyncio.Event) -> None:
        async for _ in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            first.set()

    tasks = [asyncio.create_task(watch(i, first)) for i, first in zip(ids, opened, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(first.wait() for first in opened)), 120)
    return tasks


async def _close_watches(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def writes_with_watchers(
    directory: Path, counts: tuple[int, ...], writes: int, rounds: int
) -> tuple[dict[int, list[float]], dict[int, list[float]], float]:
    """``({watchers: [writes/s per round]}, {watchers: [GetExecution/s on the watching client]}, peak RSS MiB)``."""
    served = Served(directory)
    try:
        async with served.client() as writer, served.client() as watching:
            ids = await _executions(writer, max(counts) + 1, "w")
            target = ids[0]
            await writer.update_execution_status(_progress(target, 0))
            rates: dict[int, list[float]] = {}
            unary: dict[int, list[float]] = {}
            n = 1
            for r in range(rounds):
                for count in counts:
                    tasks = await _open_watches(watching, ids[1 : count + 1])
                    try:
                        started = time.perf_counter()
                        for _ in range(writes):
                            await writer.update_execution_status(_progress(target, n))
                            n += 1
                        rates.setdefault(count, []).append(writes / (time.perf_counter() - started))
                        # Unary calls on the client carrying the watches (they used to queue behind them).
                        started = time.perf_counter()
                        for _ in range(writes):
                            await watching.get_execution(pb.GetExecutionRequest(execution_id=target))
                        unary.setdefault(count, []).append(writes / (time.perf_counter() - started))
                    finally:
                        await _close_watches(tasks)
                print(
                    f"    round {r + 1}: " + ", ".join(f"{c} watchers {rates[c][-1]:,.0f} writes/s" for c in counts),
                    flush=True,
                )
            return rates, unary, peak_rss_mib(served.process.pid)
    finally:
        served.close()


async def _latencies(backend: Backend, execution_id: str, writes: int) -> tuple[list[float], list[float]]:
    """Per write: (seconds from the write's start to the watcher's receipt, the write call's seconds)."""
    received: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

    async def watch() -> None:
        async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
            received.put_nowait((response.execution.version, time.perf_counter()))

    task = asyncio.create_task(watch())
    latencies, calls = [], []
    try:
        version, _ = await received.get()
        for n in range(writes):
            started = time.perf_counter()
            await backend.update_execution_status(_progress(execution_id, n))
            returned = time.perf_counter()
            got, at = await received.get()
            assert got == version + 1
            version = got
            latencies.append(at - started)
            calls.append(returned - started)
    finally:
        await _close_watches([task])
    return latencies, calls


async def watch_latency(directory: Path, writes: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """``{"in-process"|"remote": ([median latency per round], [median write call per round])}``."""
    results: dict[str, tuple[list[float], list[float]]] = {"in-process": ([], []), "remote": ([], [])}
    served = Served(directory)
    try:
        async with SqliteBackend(directory / "latency.db") as local, served.client() as remote:
            targets = {}
            for name, backend in (("in-process", local), ("remote", remote)):
                [targets[name]] = await _executions(backend, 1, "l")
                await backend.update_execution_status(_progress(targets[name], 0))
            for _ in range(rounds):
                for name, backend in (("in-process", local), ("remote", remote)):
                    latencies, calls = await _latencies(backend, targets[name], writes)
                    results[name][0].append(statistics.median(latencies))
                    results[name][1].append(statistics.median(calls))
    finally:
        served.close()
    return results
