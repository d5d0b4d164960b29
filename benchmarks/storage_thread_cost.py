"""What keeping SQLite lock waits off the event loop costs the in-process fast path.

    .venv/bin/python benchmarks/storage_thread_cost.py [--rounds 9] [--count 500]

``SqliteBackend`` runs each storage call inline first, with a busy timeout of
0, and only a call that meets another process's lock goes to its storage
thread (``backends/sqlite/_thread.py``). This prints, interleaved in one
process, executions per second created and driven PENDING -> RUNNING ->
SUCCEEDED (``sqlite_throughput.backend_round``):

- the backend as shipped (inline first);
- the same backend with every call on its storage thread (the simpler design
  it replaced: one thread hop per call, the busy timeout set once);
- raw ``sqlite3`` doing the same writes (``sqlite_throughput.RawWriter``).

Each ratio is the median of the per-round ratios, with min and max. Not a
test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

import sqlite_throughput as bench  # a sibling script: this script's folder is first on sys.path

from stigmer_backend.backends.sqlite import SqliteBackend


def _every_call_on_the_thread(backend: SqliteBackend) -> None:
    storage = backend._storage
    backend._set_busy_timeout(30.0)  # waits in SQLite, set once: no pragma around each job
    storage._enter = storage._leave = lambda: None  # type: ignore[method-assign]
    storage.run = storage.run_on_thread  # type: ignore[method-assign]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=500, help="executions per round (default 500)")
    args = parser.parse_args()
    count = args.count
    rates: dict[str, list[float]] = {"inline first (as shipped)": [], "every call on the thread": [], "raw": []}
    with tempfile.TemporaryDirectory(prefix="stigmer-bench-") as tmp:
        directory = Path(tmp)
        async with SqliteBackend(directory / "raw.db") as backend:  # the schema and agent for raw sqlite3
            await backend.apply_agent_instance(bench.AGENT)
        raw = bench.RawWriter(directory / "raw.db")
        async with SqliteBackend(directory / "a.db") as inline, SqliteBackend(directory / "b.db") as threaded:
            _every_call_on_the_thread(threaded)
            for backend in (inline, threaded):
                await backend.apply_agent_instance(bench.AGENT)
                await bench.backend_round(backend, "warmup", count // 5)
            raw.run("warmup", count // 5)
            for r in range(args.rounds):  # interleaved, so drift hits all three alike
                rates["inline first (as shipped)"].append(count / await bench.backend_round(inline, f"r{r}", count))
                rates["every call on the thread"].append(count / await bench.backend_round(threaded, f"r{r}", count))
                rates["raw"].append(count / raw.run(f"r{r}", count))
        raw.conn.close()
    print(f"{args.rounds} rounds of {count} executions; raw sqlite3: median {statistics.median(rates['raw']):,.0f}/s")
    for name in ("inline first (as shipped)", "every call on the thread"):
        ratios = [a / b for a, b in zip(rates[name], rates["raw"], strict=True)]
        print(
            f"  {name:26} median {statistics.median(rates[name]):6,.0f}/s, / raw sqlite3 "
            f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    pairs = [t / i for t, i in zip(rates["every call on the thread"], rates["inline first (as shipped)"], strict=True)]
    print(
        f"  every call on the thread / inline first: median {statistics.median(pairs):.2f} "
        f"(min {min(pairs):.2f}, max {max(pairs):.2f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
