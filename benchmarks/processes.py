"""Several processes writing one SQLite file: aggregate lifecycles/s, backend and raw ``sqlite3``.

    .venv/bin/python benchmarks/processes.py [--quick]

Each process creates and drives executions PENDING -> RUNNING -> SUCCEEDED (three write
transactions each), through ``SqliteBackend`` or with the same SQL in raw ``sqlite3``
(``sqlite_throughput.RawWriter``), on one shared file. The figure is the aggregate rate: all
lifecycles of all processes over the time from the common start to the last one done. Scaling is
the rate with N processes over the rate with one, measured in the same run; goal: the backend's
scaling at 4 processes at least raw's. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlite_throughput import AGENT, RawWriter, backend_round

from stigmer.backends.sqlite import SqliteBackend

__all__ = ["scaling"]


def _worker(kind: str, path: str, tag: str, count: int) -> None:
    """One process: open, say ready, wait for go, run ``count`` lifecycles, report."""

    async def run_backend() -> None:
        async with SqliteBackend(path) as backend:
            print("ready", flush=True)
            sys.stdin.readline()
            await backend_round(backend, tag, count)
            print("done", flush=True)

    if kind == "backend":
        asyncio.run(run_backend())
    else:
        raw = RawWriter(Path(path))
        print("ready", flush=True)
        sys.stdin.readline()
        raw.run(tag, count)
        print("done", flush=True)


def aggregate_rate(kind: str, path: Path, processes: int, count: int, tag: str) -> float:
    """Lifecycles per second of ``processes`` processes running ``count`` each, together."""
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, str(path), f"{tag}-p{n}", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.stdout.readline().strip() == "done"
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait()
    return processes * count / elapsed


def scaling(directory: Path, counts: tuple[int, ...], count: int, rounds: int) -> dict:
    """``{(kind, processes): [rate per round]}``, kinds and process counts interleaved per round."""
    paths = {}
    for kind in ("backend", "raw"):
        paths[kind] = directory / f"processes-{kind}.db"
        asyncio.run(_prepare(paths[kind]))
    rates: dict[tuple[str, int], list[float]] = {}
    for kind in ("backend", "raw"):
        aggregate_rate(kind, paths[kind], 1, count // 5, "warmup")
    for r in range(rounds):
        for processes in counts:
            for kind in ("backend", "raw"):
                rate = aggregate_rate(kind, paths[kind], processes, count, f"r{r}n{processes}")
                rates.setdefault((kind, processes), []).append(rate)
        print(
            "    round "
            + f"{r + 1}: "
            + ", ".join(f"{k} x{n} {rates[k, n][-1]:,.0f}/s" for n in counts for k in ("backend", "raw")),
            flush=True,
        )
    return rates


async def _prepare(path: Path) -> None:
    async with SqliteBackend(path) as backend:
        await backend.apply_agent_instance(AGENT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "PATH", "TAG", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, path, tag, count = args.worker
        _worker(kind, path, tag, int(count))
        return
    count = 200 if args.quick else 600
    with tempfile.TemporaryDirectory(prefix="stigmer-bench-") as tmp:
        rates = scaling(Path(tmp), (1, 2, 4), count, args.rounds)
    summary = {}
    for kind in ("backend", "raw"):
        for n in (2, 4):
            ratios = [a / b for a, b in zip(rates[kind, n], rates[kind, 1], strict=True)]
            summary[f"{kind} x{n}/x1"] = (statistics.median(ratios), min(ratios), max(ratios))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
