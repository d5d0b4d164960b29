"""Two checkouts' ``stigmer server`` side by side: the ``remote_path`` figures, before and after a change.

    .venv/bin/python benchmarks/remote_ab.py /work/main/.venv/bin/python          # this checkout vs main
    .venv/bin/python benchmarks/remote_ab.py OTHER_PYTHON --rounds 9 --calls 240

``OTHER_PYTHON`` is the interpreter of another checkout's virtualenv: its ``stigmer_backend`` serves
the "other" side. Both servers (each on a SQLite file of its own, filled alike) and the bare grpclib
server of ``remote_path`` run at once; every round runs each side in turn, the order flipped from one
round to the next, so both see the same machine load. Printed: each side's median [min..max] over
the rounds, and per-round ratios (this/bare, other/bare, this/other), with ``uptime`` before and after.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from remote_path import CONCURRENCY, BareServer, _fill, paired_rounds, run_lifecycle, server_files, timed, warmed_rounds

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import LISTENING_PREFIX


def start_server(
    python: str, database: Path, token_file: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[str], str]:
    """``python -m stigmer_backend.cli server`` on a free port; the process and its ``HOST:PORT``."""
    command = [python, "-m", "stigmer_backend.cli", "server", "--db", str(database), "--token-file", str(token_file)]
    process = subprocess.Popen(
        [*command, "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith(LISTENING_PREFIX):
        process.terminate()
        raise RuntimeError(f"{python}: the server did not start ({line!r})")
    return process, line[len(LISTENING_PREFIX) :]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


async def measure(other_python: str, rounds: int, calls: int, in_flight: list[int], lists: bool = True) -> str:
    token = secrets.token_hex(24)
    lines = [f"uptime before: {os.popen('uptime').read().strip()}"]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        token_file, env = server_files(work, token)
        processes, backends = {}, {}
        for side, python in (("this", sys.executable), ("other", other_python)):
            processes[side], endpoint = start_server(python, work / f"{side}.db", token_file, env)
            backends[side] = CloudBackend(endpoint, token=token)
        local = SqliteBackend(work / "this.db")
        bare = None
        try:
            for backend in backends.values():
                created, claimed, renewed, succeeded = await _fill(backend, 60)
            list_request = pb.ListExecutionsRequest(page_size=50)
            listed = await backends["this"].list_executions(list_request)
            wire = {
                "get": bytes(pb.GetExecutionResponse(execution=succeeded.execution)),
                "list": bytes(listed),
                "create": bytes(created),
                "claim": bytes(claimed),
                "renew": bytes(renewed),
                "succeed": bytes(succeeded),
            }
            responses_file = work / "responses.json"
            responses_file.write_text(json.dumps({name: data.hex() for name, data in wire.items()}))
            bare = BareServer(responses_file, token, default_codec=False)
            serial = iter(range(10**9))

            def lifecycle(backend: CloudBackend) -> Any:
                return lambda: run_lifecycle(backend, f"ab-{next(serial):06d}")

            pids = {side: process.pid for side, process in processes.items()}
            if lists:
                listing = await paired_rounds(
                    {
                        "this": lambda: timed(
                            lambda: backends["this"].list_executions(list_request), 100, 1, pids["this"]
                        ),
                        "other": lambda: timed(
                            lambda: backends["other"].list_executions(list_request), 100, 1, pids["other"]
                        ),
                        "in_process": lambda: timed(lambda: local.list_executions(list_request), 100, 1, None),
                    },
                    rounds,
                )
                lines.append("ListExecutions page of 50, p50 latency / in-process (per round):")
                for side in ("this", "other"):
                    ratios = [
                        a["p50_ms"] / b["p50_ms"] for a, b in zip(listing[side], listing["in_process"], strict=True)
                    ]
                    p50 = [one["p50_ms"] for one in listing[side]]
                    lines.append(f"  {side:<5}  {_spread(ratios)}   p50 ms {_spread(p50)}")
            for concurrency in in_flight:
                sides = {
                    "this": (lifecycle(backends["this"]), pids["this"]),
                    "other": (lifecycle(backends["other"]), pids["other"]),
                    "bare": (lambda: bare.lifecycle(created.execution.id), bare.process.pid),
                }
                cycles = await warmed_rounds(sides, calls, concurrency, rounds)
                lines.append(f"Lifecycles, {concurrency} in flight (per-round ratios of rates; CPU ms per lifecycle):")
                for a, b in (("this", "bare"), ("other", "bare"), ("this", "other")):
                    ratios = [x["per_s"] / y["per_s"] for x, y in zip(cycles[a], cycles[b], strict=True)]
                    lines.append(f"  {a}/{b:<5}  {_spread(ratios)}")
                for side, results in cycles.items():
                    rates = [one["per_s"] for one in results]
                    cpu = [one["cpu_ms"] for one in results]
                    server = [one["server_cpu_ms"] for one in results]
                    lines.append(
                        f"  {side:<5}  lifecycles/s {_spread(rates)}  CPU {_spread(cpu)}  serving {_spread(server)}"
                    )
        finally:
            for backend in backends.values():
                await backend.aclose()
            await local.aclose()
            if bare is not None:
                bare.close()
            for process in processes.values():
                process.terminate()
                process.wait()
    lines.append(f"uptime after: {os.popen('uptime').read().strip()}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other_python", help="the interpreter of the other checkout's virtualenv")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=160, help="lifecycles per side and round")
    parser.add_argument(
        "--in-flight", type=int, action="append", help=f"lifecycles in flight (repeatable; default 1 and {CONCURRENCY})"
    )
    parser.add_argument("--no-lists", action="store_true", help="measure lifecycles only")
    arguments = parser.parse_args()
    in_flight = arguments.in_flight or [1, CONCURRENCY]
    print(
        asyncio.run(
            measure(arguments.other_python, arguments.rounds, arguments.calls, in_flight, lists=not arguments.no_lists)
        )
    )
