"""Several processes writing one SQLite file: aggregate lifecycles/s, backend and raw ``sqlite3``.

    .venv/bin/python benchmarks/processes.py [--quick]

Each process creates and drives executions PENDING -> RUNNING -> SUCCEEDED (three write
transactions each), through ``SqliteBackend`` or with the same SQL in raw ``sqlite3``
(``sqlite_throughput.RawWriter``), on one shared file. The figure is the aggregate rate: all
lifecycles of all processes over the time from the common start to the last one done. Scaling is
the rate with N processes over the rate with one, measured in the same run; goal: the backend's
scaling at 4 processes at least raw's. Not a test: nothing asserts.

``--counters`` runs the same rounds with every write transaction of every process observed (a
proxy around its connection; this costs time, so those rates are not the table's): per lifecycle,
``BEGIN IMMEDIATE`` attempts that met the lock, seconds from the first attempt to holding the lock,
seconds holding it (``BEGIN`` to ``COMMIT``), CPU seconds, context switches, and for the backend the
calls that fell back from the event loop to the storage thread.

What the counters showed (3 rounds, 2 loaded cores): per lifecycle, four backend processes spend
650 us of CPU against 406 us for one (raw sqlite3: 267 against 203), and hold the lock 1,245 us of
wall time against 523 (raw: 890 against 377) for about 290 us of CPU done inside it (raw: 250).
The lock is held several times longer than the work in it takes because a holder is preempted by
the other processes, for raw sqlite3 as for the backend. The backend's extra CPU goes to context
switches (1.74 voluntary and 0.98 involuntary against raw's 0.47 and 0.23: its larger working set
pays more for each), to the 0.31 calls per lifecycle that met the lock on the event loop and ran
again on the storage thread (the reads and decisions before ``BEGIN`` done twice, two thread
switches), and to retrying ``BEGIN`` there.

``--kinds backend raw backend-sqlite-wait`` adds a diagnostic kind: the backend with its write-lock
wait on the storage thread (``_begin_immediate``: retries after 50 us doubling to 2 ms) replaced by
SQLite's own busy handler (sleeps of 1, 2, 5, 10... ms), as raw sqlite3 waits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlite_throughput import AGENT, RawWriter, backend_round

from stigmer_backend.backends.sqlite import SqliteBackend

__all__ = ["scaling"]


class _ObservedConnection:
    """A connection that times its write transactions: waiting for the lock, and holding it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.counters = {"transactions": 0, "busy": 0, "wait_s": 0.0, "held_s": 0.0}
        self._first_attempt: float | None = None
        self._held_since: float | None = None

    def __getattr__(self, name: str):
        return getattr(self._conn, name)

    def execute(self, sql: str, *args):
        if sql == "BEGIN IMMEDIATE":
            if self._first_attempt is None:
                self._first_attempt = time.perf_counter()
            try:
                cursor = self._conn.execute(sql, *args)
            except sqlite3.OperationalError:
                self.counters["busy"] += 1
                raise
            now = time.perf_counter()
            self.counters["wait_s"] += now - self._first_attempt
            self.counters["transactions"] += 1
            self._first_attempt, self._held_since = None, now
            return cursor
        cursor = self._conn.execute(sql, *args)
        if sql in ("COMMIT", "ROLLBACK") and self._held_since is not None:
            self.counters["held_s"] += time.perf_counter() - self._held_since
            self._held_since = None
        return cursor


def _worker(kind: str, path: str, tag: str, count: int, observe: bool) -> None:
    """One process: open, say ready, wait for go, run ``count`` lifecycles, say done (with counters)."""
    counters: dict[str, float] = {}

    async def run_backend() -> None:
        async with SqliteBackend(path) as backend:
            if observe:
                observed = backend._conn = _ObservedConnection(backend._conn)
                counters.update(observed.counters)
                to_thread = backend._storage.run_on_thread

                async def counted(fn, *args):
                    counters["to_thread"] = counters.get("to_thread", 0) + 1
                    return await to_thread(fn, *args)

                backend._storage.run_on_thread = counted
            print("ready", flush=True)
            sys.stdin.readline()
            before = resource.getrusage(resource.RUSAGE_SELF)
            await backend_round(backend, tag, count)
            after = resource.getrusage(resource.RUSAGE_SELF)
            if observe:
                counters.update(observed.counters)
            print("done", json.dumps(_with_usage(counters, before, after)), flush=True)

    if kind == "backend-sqlite-wait":
        from stigmer_backend.backends.sqlite import _backend

        _backend._begin_immediate = _sqlite_busy_handler_begin
        kind = "backend"
    if kind == "backend":
        asyncio.run(run_backend())
    else:
        raw = RawWriter(Path(path))
        if observe:
            raw.conn = observed = _ObservedConnection(raw.conn)
        print("ready", flush=True)
        sys.stdin.readline()
        before = resource.getrusage(resource.RUSAGE_SELF)
        raw.run(tag, count)
        after = resource.getrusage(resource.RUSAGE_SELF)
        if observe:
            counters.update(observed.counters)
        print("done", json.dumps(_with_usage(counters, before, after)), flush=True)


def _sqlite_busy_handler_begin(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """``BEGIN IMMEDIATE`` waiting in SQLite's busy handler (the backend restores the timeout after)."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("BEGIN IMMEDIATE")


def _with_usage(counters: dict, before, after) -> dict:
    return {
        **counters,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "voluntary_switches": after.ru_nvcsw - before.ru_nvcsw,
        "involuntary_switches": after.ru_nivcsw - before.ru_nivcsw,
    }


def aggregate_rate(
    kind: str, path: Path, processes: int, count: int, tag: str, counters: list[dict] | None = None
) -> float:
    """Lifecycles per second of ``processes`` processes running ``count`` each, together.

    With ``counters`` (a list), the processes observe their transactions and append what they counted.
    """
    observe = ["--observe"] if counters is not None else []
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, str(path), f"{tag}-p{n}", str(count), *observe],
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
        reports = []
        for worker in workers:
            said, _, report = worker.stdout.readline().strip().partition(" ")
            assert said == "done", said
            reports.append(json.loads(report))
        elapsed = time.perf_counter() - started
        if counters is not None:
            counters += reports
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait()
    return processes * count / elapsed


def scaling(
    directory: Path,
    counts: tuple[int, ...],
    count: int,
    rounds: int,
    counters: dict | None = None,
    kinds: tuple[str, ...] = ("backend", "raw"),
) -> dict:
    """``{(kind, processes): [rate per round]}``, kinds and process counts interleaved per round.

    Which kind goes first alternates by round, so neither always runs right after the other's
    writes (checkpoints, page cache) or in the same slice of the machine's other load. With
    ``counters`` (a dict), every process observes its transactions: ``{(kind, processes): [per process]}``.
    """
    paths = {}
    for kind in kinds:
        paths[kind] = directory / f"processes-{kind}.db"
        asyncio.run(_prepare(paths[kind]))
    rates: dict[tuple[str, int], list[float]] = {}
    for kind in kinds:
        aggregate_rate(kind, paths[kind], 1, count // 5, "warmup")
    for r in range(rounds):
        for processes in counts:
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                seen = None if counters is None else counters.setdefault((kind, processes), [])
                rate = aggregate_rate(kind, paths[kind], processes, count, f"r{r}n{processes}", seen)
                rates.setdefault((kind, processes), []).append(rate)
        print(
            "    round "
            + f"{r + 1}: "
            + ", ".join(f"{k} x{n} {rates[k, n][-1]:,.0f}/s" for n in counts for k in kinds),
            flush=True,
        )
    return rates


def per_lifecycle(counters: dict, count: int) -> dict:
    """``{"backend x4": {counter: median over processes of counter / lifecycle}}`` (times in us)."""
    summary = {}
    for (kind, processes), reports in sorted(counters.items()):
        names = sorted({name for report in reports for name in report})
        scale = {name: 1e6 if name.endswith("_s") else 1 for name in names}
        summary[f"{kind} x{processes}"] = {
            name.removesuffix("_s") + ("_us" if name.endswith("_s") else ""): round(
                statistics.median(report.get(name, 0) * scale[name] / count for report in reports), 2
            )
            for name in names
        }
    return summary


async def _prepare(path: Path) -> None:
    async with SqliteBackend(path) as backend:
        await backend.apply_agent_instance(AGENT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--counters", action="store_true", help="observe every transaction (slower; see above)")
    parser.add_argument("--kinds", nargs="+", default=["backend", "raw"], help="backend, raw, backend-sqlite-wait")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "PATH", "TAG", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--observe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, path, tag, count = args.worker
        _worker(kind, path, tag, int(count), args.observe)
        return
    count = 300 if args.quick else 1000
    counters: dict | None = {} if args.counters else None
    with tempfile.TemporaryDirectory(prefix="stigmer-bench-") as tmp:
        rates = scaling(Path(tmp), (1, 2, 4), count, args.rounds, counters, tuple(args.kinds))
    if counters is not None:
        print(json.dumps(per_lifecycle(counters, count), indent=1))
    summary = {}
    for kind in args.kinds:
        for n in (2, 4):
            ratios = [a / b for a, b in zip(rates[kind, n], rates[kind, 1], strict=True)]
            summary[f"{kind} x{n}/x1"] = (statistics.median(ratios), min(ratios), max(ratios))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
