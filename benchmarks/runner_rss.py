"""Peak RSS of a real ``stigmer runner start`` draining executions, next to a bare interpreter's.

    .venv/bin/python benchmarks/runner_rss.py [--quick] [--rounds N]

Each round: a fresh ``STIGMER_HOME`` (local SQLite) holds an agent whose model is a loopback
OpenAI-compatible server (streams ``"done"`` after 100 ms, so ``--concurrency`` executions are in
flight at once) and ``count`` PENDING executions; ``stigmer runner start`` drains them, is stopped
with SIGTERM; its peak RSS is its ``VmHWM`` once every execution is done. The baseline, run in the
same round: ``python -c "import httpx, grpclib.client"`` (the runner's HTTP client and the contract's
RPC library, nothing of ours), which reports its own ``VmHWM``. Not ``wait4``'s ``ru_maxrss``: Linux
folds in the size of the process that forked the child (the benchmark, hundreds of MiB after the
million-row tables), so every child looked as big as its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["BASELINE", "drain_rounds", "interpreter_rss_mib", "vm_hwm_mib"]

BASELINE = 'python -c "import httpx, grpclib.client"'
STIGMER = str(Path(sys.executable).with_name("stigmer"))
TERMINAL = (pb.ExecutionPhase.SUCCEEDED, pb.ExecutionPhase.FAILED, pb.ExecutionPhase.CANCELLED)


class _Model(BaseHTTPRequestHandler):
    """Chat completions: after 100 ms "thinking", streams ``"done"`` as server-sent events."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(0.1)
        event = {"choices": [{"index": 0, "delta": {"content": "done"}}]}
        self.wfile.write(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


def vm_hwm_mib(pid: int | str) -> float:
    """The process's peak resident set (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def interpreter_rss_mib(imports: str) -> float:
    """Peak RSS (MiB) of ``python -c "import ..."``, as that interpreter reports it just before exiting."""
    command = [sys.executable, "-c", f"import {imports}; print(open('/proc/self/status').read())"]
    status = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


async def _queue(db: Path, endpoint: str, count: int) -> list[str]:
    async with SqliteBackend(db) as backend:
        model = pb.ModelConfig(provider="openai-compatible", model="bench", endpoint=endpoint)
        await backend.apply_agent_instance(
            pb.ApplyAgentInstanceRequest(name="bench", spec=pb.AgentInstanceSpec(instructions="Answer.", model=model))
        )
        ids = []
        for n in range(count):
            agent = pb.AgentInstanceRef(name="bench")
            message = pb.ExecutionInput(f"#{n}")
            request = pb.CreateExecutionRequest(request_id=f"rss-{n}", agent_instance=agent, input=message)
            ids.append((await backend.create_execution(request)).execution.id)
        return ids


async def _phases(db: Path, ids: list[str], timeout: float) -> list[pb.ExecutionPhase]:
    """Each execution's phase once terminal, followed with ``WatchExecution``."""
    phases = []
    async with SqliteBackend(db) as backend, asyncio.timeout(timeout):
        for execution_id in ids:
            async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
                if response.execution.status.phase in TERMINAL:
                    phases.append(response.execution.status.phase)
                    break
    return phases


def drain(directory: Path, endpoint: str, count: int, concurrency: int) -> float:
    """Peak RSS (MiB) of one ``stigmer runner start`` that ran ``count`` executions to SUCCEEDED."""
    home = directory / "home"
    home.mkdir(mode=0o700)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={home}/no-dbus-here"  # the key file, not a keychain
    db = home / "local.db"
    ids = asyncio.run(_queue(db, endpoint, count))
    log = directory / "runner.log"
    with log.open("wb") as stderr:
        runner = subprocess.Popen(
            [STIGMER, "runner", "start", "--concurrency", str(concurrency)], env=env, stderr=stderr
        )
        try:
            phases = asyncio.run(_phases(db, ids, timeout=600))
            peak = vm_hwm_mib(runner.pid)
        finally:
            runner.send_signal(signal.SIGTERM)
            runner.wait()
    output = log.read_text(errors="replace")
    if runner.returncode != 0 or "Traceback" in output:
        raise RuntimeError(f"stigmer runner start exited {runner.returncode}: {output[-2000:]}")
    if phases != [pb.ExecutionPhase.SUCCEEDED] * count:
        raise RuntimeError(f"not every execution succeeded: {sorted(set(phases))}")
    return peak


def drain_rounds(directory: Path, count: int, rounds: int, concurrency: int = 4) -> tuple[list[float], list[float]]:
    """(runner peak RSS per round, baseline peak RSS per round), MiB, interleaved."""
    model = ThreadingHTTPServer(("127.0.0.1", 0), _Model)
    model.daemon_threads = True
    threading.Thread(target=model.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{model.server_address[1]}/v1"
    runner, baseline = [], []
    try:
        for r in range(rounds):
            baseline.append(interpreter_rss_mib("httpx, grpclib.client"))
            round_dir = directory / f"runner-{r}"
            round_dir.mkdir()
            started = time.perf_counter()
            runner.append(drain(round_dir, endpoint, count, concurrency))
            print(
                f"    round {r + 1}: runner {runner[-1]:.1f} MiB after {count} executions "
                f"({time.perf_counter() - started:.1f} s), baseline {baseline[-1]:.1f} MiB",
                flush=True,
            )
    finally:
        model.shutdown()
        model.server_close()
    return runner, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        metavar="N",
        help="executions per runner, one figure each (default 400; --quick 100): "
        "e.g. --counts 50 800 shows whether the runner grows with the work it has done",
    )
    args = parser.parse_args()
    for count in args.counts or [100 if args.quick else 400]:
        with tempfile.TemporaryDirectory(prefix="stigmer-bench-") as tmp:
            runner, baseline = drain_rounds(Path(tmp), count, args.rounds)
        ratios = [a / b for a, b in zip(runner, baseline, strict=True)]
        print(
            f"{count} executions: runner peak RSS {statistics.median(runner):.1f} MiB "
            f"({min(runner):.1f}-{max(runner):.1f}), {BASELINE} {statistics.median(baseline):.1f} MiB, "
            f"ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
