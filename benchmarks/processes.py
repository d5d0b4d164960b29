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
seconds holding it (``BEGIN`` to ``COMMIT`` returning) and in ``COMMIT``, CPU seconds, context
switches, for the backend the calls that fell back from the event loop to the storage thread, and
the lock's timeline across processes (``lock_timeline``): lock time, idle gaps, the part of them
when some process wanted the lock, and handovers from one process to another.

What they showed (3 rounds, quiet 2-core machine, 4 processes against 1; ``backend-short-steps-
auto-checkpoint`` is the backend before these findings): raw sqlite3 hands the lock to another
process 0.06 times per lifecycle (its waiters sleep 1 ms and more in SQLite's busy handler), so
one process runs at a time at its one-process speed (lock 229 us per lifecycle, against 241 with
one process). The backend's waiters retried every 50 us to 2 ms and caught the lock in the
holder's gaps between its own transactions: 1.93 handovers per lifecycle, 1.15 calls run again on
the storage thread, 5.9 voluntary context switches (0.3 with one process), and 1,266 us of CPU
per lifecycle against 368. And SQLite's automatic checkpoint, which runs after every commit once
the log holds 1,000 pages, never let the log start again with four processes reading it (it grew
to 70-110 MB), so every commit ran a checkpoint with its fsyncs: ``COMMIT`` took 794 us per
lifecycle against 190. With the busy handler's wait and the backend's own checkpoints
(``SqliteBackend._checkpoint``): 0.21 handovers, 0.15 calls on the thread, 0.76 switches, 466 us
of CPU (362 with one process), ``COMMIT`` 115 us (98). 9 interleaved rounds: 4 processes / 1 =
0.93 (0.88-1.02), raw 0.95 (0.82-1.00); the busy handler's wait alone 0.73, before 0.60.

``--kinds backend raw backend-short-steps backend-auto-checkpoint backend-short-steps-auto-checkpoint``
adds diagnostic kinds: the backend waiting for the write lock as it did before (on the storage
thread, ``BEGIN IMMEDIATE`` retried after 50 us doubling to 2 ms) instead of in SQLite's busy
handler (sleeps of 1, 2, 5, 10... ms, as raw sqlite3 waits); leaving checkpoints to SQLite's
automatic checkpoint, as it did before; or both.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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


class _ShortStepConnection:
    """A connection whose waiting ``BEGIN IMMEDIATE`` retries in short steps instead of SQLite's busy handler."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._wait_ms = 0  # the backend's current busy timeout: 0 on the event loop

    def __getattr__(self, name: str):
        return getattr(self._conn, name)

    def execute(self, sql: str, *args):
        if sql.startswith("PRAGMA busy_timeout = "):
            self._wait_ms = int(sql.rpartition(" ")[2])
        if sql != "BEGIN IMMEDIATE" or not self._wait_ms:
            return self._conn.execute(sql, *args)
        self._conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + self._wait_ms / 1000
            delay = 0.00005
            while True:
                try:
                    return self._conn.execute(sql)
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {self._wait_ms}")


class _ObservedConnection:
    """A connection that times its write transactions: waiting for the lock, and holding it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.counters = {"transactions": 0, "busy": 0, "wait_s": 0.0, "held_s": 0.0, "commit_s": 0.0}
        # (first attempt, lock taken, lock released) per write transaction, on the clock every
        # process shares (CLOCK_MONOTONIC): the parent lays them side by side (``lock_timeline``).
        self.transactions: list[tuple[float, float, float]] = []
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
            self._held_since = now
            return cursor
        started = time.perf_counter()
        cursor = self._conn.execute(sql, *args)
        if sql in ("COMMIT", "ROLLBACK") and self._held_since is not None:
            released = time.perf_counter()
            self.counters["commit_s"] += released - started  # with a checkpoint, when the commit runs one
            self.counters["held_s"] += released - self._held_since
            self.transactions.append((self._first_attempt, self._held_since, released))
            self._first_attempt = self._held_since = None
        return cursor


def _worker(kind: str, path: str, tag: str, count: int, observe: bool) -> None:
    """One process: open, say ready, wait for go, run ``count`` lifecycles, say done (with counters)."""
    counters: dict[str, float] = {}

    async def run_backend(variant: str) -> None:
        async with SqliteBackend(path) as backend:
            if "short-steps" in variant:
                backend._conn = _ShortStepConnection(backend._conn)
            if "auto-checkpoint" in variant:
                backend._checkpoints.every = sys.maxsize
                backend._conn.execute("PRAGMA wal_autocheckpoint = 1000")
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
                counters.update(observed.counters, timeline=observed.transactions)
            print("done", json.dumps(_with_usage(counters, before, after)), flush=True)

    if kind.startswith("backend"):
        asyncio.run(run_backend(kind.removeprefix("backend").removeprefix("-")))
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
            counters.update(observed.counters, timeline=observed.transactions)
        print("done", json.dumps(_with_usage(counters, before, after)), flush=True)


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
            counters += lock_timeline(reports)
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait()
    return processes * count / elapsed


def lock_timeline(reports: list[dict]) -> list[dict]:
    """``reports`` with each process's ``timeline`` replaced by what it says about the lock's time.

    The write transactions of all processes, in the order they took the lock, cover the time from
    the first ``BEGIN`` to the last ``COMMIT`` with lock time and gaps where nobody held it. A
    transaction is stamped released when ``COMMIT`` returns, which can be after the next process
    took the lock (the commit's own checkpoint runs unlocked, or the process was descheduled right
    after unlocking): its lock time ends at the next take at the latest. Per process: ``lock_s`` (so
    clipped; all processes' sum plus the gaps is the whole span), ``idle_s`` (the gaps before each
    of its takes), ``idle_waited_s`` (the part of those gaps during which some process had asked
    for the lock and not got it: the lock free while wanted), ``handovers`` and
    ``idle_handover_s`` (its takes, and their gaps, after another process's transaction).
    """
    held = sorted(
        (taken, released, process, asked)
        for process, report in enumerate(reports)
        for asked, taken, released in report["timeline"]
    )
    waits = _union(sorted((asked, taken) for taken, _, _, asked in held if taken > asked))
    out = [{k: v for k, v in report.items() if k != "timeline"} for report in reports]
    for report in out:
        report.update(lock_s=0.0, idle_s=0.0, idle_waited_s=0.0, handovers=0, idle_handover_s=0.0)
    following = [*held[1:], (None,) * 4]
    for (taken, released, process, _), (next_taken, _, next_process, _) in zip(held, following, strict=True):
        released = released if next_taken is None else min(released, next_taken)
        out[process]["lock_s"] += released - taken
        if next_taken is None:
            continue
        report = out[next_process]
        report["idle_s"] += next_taken - released
        report["idle_waited_s"] += _overlap(waits, released, next_taken)
        if next_process != process:
            report["handovers"] += 1
            report["idle_handover_s"] += next_taken - released
    return out


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(union: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` covered by the sorted disjoint ``union``."""
    total = 0.0
    i = max(bisect.bisect_right(union, (start, float("inf"))) - 1, 0)
    while i < len(union) and union[i][0] < end:
        total += max(0.0, min(end, union[i][1]) - max(start, union[i][0]))
        i += 1
    return total


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
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["backend", "raw"],
        help="backend, raw, backend-short-steps, backend-auto-checkpoint (see above)",
    )
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
