"""Every performance figure of the project in one table, each next to its baseline from the same run.

    benchmarks/run            # full: 1,000,000-row tables, more rounds (~10 min on 2 cores)
    benchmarks/run --quick    # 100,000-row tables, fewer rounds (~3 min)

Each row: a figure's median over rounds, the median of its baseline measured in the same run
(interleaved round by round where they can be), their ratio as the median of the per-round
ratios with its min and max, the goal and whether it was met. The table is printed and written as
JSON (``--json``, default ``benchmarks/latest.json``) with the machine, date and command. Nothing
asserts: a missed goal is reported, not raised.

Sections: in-process lifecycle vs raw sqlite3 (``sqlite_throughput``); remote vs bare grpclib at
1 and 16 in flight (``remote_path.py``, run as it is and read from its table); a list page per
filter at a small and a large table (``list_pages``); 1/2/4 processes on one file
(``processes``); writes/s with 0/100/500 idle watchers and watch latency (``watchers``); CLI
start-up against ``python -c "import click"``; peak RSS of the server and the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import list_pages
import processes
import watchers
from runner_rss import BASELINE, interpreter_rss_mib
from runner_rss import drain_rounds as runner_rss_rounds
from sqlite_throughput import throughput_rounds

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    section: str
    figure: str
    unit: str
    value: float | None
    baseline_name: str
    baseline: float | None
    ratio: float | None
    ratio_min: float | None
    ratio_max: float | None
    goal: str
    met: bool | None
    rounds: int


def measured(
    section: str,
    figure: str,
    unit: str,
    values: list[float],
    baseline_name: str,
    baselines: list[float],
    goal: str = "",
    check=None,
) -> Row:
    """A row from per-round values and baselines (paired round by round)."""
    ratios = [v / b for v, b in zip(values, baselines, strict=True)]
    ratio = statistics.median(ratios)
    return Row(
        section,
        figure,
        unit,
        statistics.median(values),
        baseline_name,
        statistics.median(baselines),
        ratio,
        min(ratios),
        max(ratios),
        goal,
        None if check is None else bool(check(ratio)),
        len(values),
    )


# -- sections ------------------------------------------------------------------------------------


def lifecycle(work: Path, quick: bool, rounds: int) -> list[Row]:
    backend, raw = asyncio.run(throughput_rounds(work, 300 if quick else 1000, rounds))
    return [
        measured(
            "in-process",
            "lifecycle (create, claim, succeed)",
            "executions/s",
            backend,
            "raw sqlite3, same SQL",
            raw,
            ">= 0.33",
            lambda r: r >= 1 / 3,
        )
    ]


_REMOTE_GET = re.compile(
    r"^\s*(\d+) in flight, calls/s: remote ([\d,]+) \[[^\]]*\]\s+bare ([\d,]+) \[[^\]]*\]"
    r".*?remote/bare rate ([\d.]+) \[([\d.]+)\.\.([\d.]+)\]",
    re.MULTILINE,
)
_REMOTE_RSS = re.compile(r"stigmer server ([\d.]+) MiB, bare ([\d.]+) MiB")
_REMOTE_LIST = re.compile(
    r"^\s*p50 latency\s+remote ([\d.]+) \[[^\]]*\]\s+in-process ([\d.]+) \[.*\n"
    r"\s*list-50 p50 latency remote/in-process ([\d.]+) \[([\d.]+)\.\.([\d.]+)\]\s+goal <= ([\d.]+)",
    re.MULTILINE,
)
_REMOTE_LIFECYCLE = re.compile(
    r"^\s*(\d+) in flight, lifecycles/s: remote ([\d,]+) \[[^\]]*\]\s+bare ([\d,]+) \[.*\n.*\n"
    r"\s*lifecycle\s+\d+ remote/bare rate ([\d.]+) \[([\d.]+)\.\.([\d.]+)\]\s+goal >= ([\d.]+)",
    re.MULTILINE,
)


def remote(quick: bool) -> tuple[list[Row], dict]:
    """Runs ``remote_path.py`` unchanged and reads its table (it owns how the remote path is measured)."""
    command = [sys.executable, str(HERE / "remote_path.py"), *(["--quick"] if quick else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    rows = []
    for in_flight, remote_rate, bare_rate, ratio, low, high in _REMOTE_GET.findall(result.stdout):
        if in_flight not in ("1", "16"):
            continue
        value, baseline = (float(x.replace(",", "")) for x in (remote_rate, bare_rate))
        rows.append(
            Row(
                "remote",
                f"GetExecution, {in_flight} in flight",
                "calls/s",
                value,
                "bare grpclib, same messages",
                baseline,
                float(ratio),
                float(low),
                float(high),
                ">= 0.80",
                float(ratio) >= 0.8,
                0,  # remote_path.py's own rounds: see its output
            )
        )
    for value, baseline, ratio, low, high, goal in _REMOTE_LIST.findall(result.stdout):
        rows.append(
            Row(
                "remote",
                "ListExecutions, page of 50, p50",
                "ms",
                float(value),
                "the same call in-process",
                float(baseline),
                float(ratio),
                float(low),
                float(high),
                f"<= {goal}",
                float(ratio) <= float(goal),
                0,
            )
        )
    for in_flight, remote_rate, bare_rate, ratio, low, high, goal in _REMOTE_LIFECYCLE.findall(result.stdout):
        rows.append(
            Row(
                "remote",
                f"lifecycle (create, claim, renew, succeed), {in_flight} in flight",
                "lifecycles/s",
                float(remote_rate.replace(",", "")),
                "4 bare grpclib calls, same messages",
                float(bare_rate.replace(",", "")),
                float(ratio),
                float(low),
                float(high),
                f">= {goal}",
                float(ratio) >= float(goal),
                0,
            )
        )
    found = _REMOTE_RSS.search(result.stdout)
    rss = {"server": float(found.group(1)), "bare": float(found.group(2))} if found else {}
    return rows, {"remote_path_output": result.stdout + result.stderr[-2000:], "rss": rss}


def pages(work: Path, quick: bool, rounds: int) -> list[Row]:
    small, large = 1_000, (100_000 if quick else 1_000_000)
    times = asyncio.run(list_pages.page_times(work, (small, large), rounds, 50 if quick else 200))
    rows = []
    for name in [*list_pages.FILTERS, "none, middle page"]:
        rows.append(
            measured(
                "list page of 50",
                f"{name}: {large:,} rows",
                "ms",
                [t * 1e3 for t in times[name, large]],
                f"{small:,} rows",
                [t * 1e3 for t in times[name, small]],
                "<= 1.5",
                lambda r: r <= 1.5,
            )
        )
    return rows


def scaling(work: Path, quick: bool, rounds: int) -> list[Row]:
    """More rounds than the other sections: on a shared machine one round's ratio swings by 2x.

    Backend and raw alternate which goes first each round (``processes.scaling``).
    """
    rounds = 2 * rounds + 1
    rates = processes.scaling(work, (1, 2, 4), 300 if quick else 1000, rounds)
    rows = []
    for n in (2, 4):
        raw_ratios = [a / b for a, b in zip(rates["raw", n], rates["raw", 1], strict=True)]
        raw_ratio = statistics.median(raw_ratios)
        rows.append(
            measured(
                "processes on one file",
                f"raw sqlite3, {n} processes ({rounds} rounds)",
                "lifecycles/s",
                rates["raw", n],
                "raw sqlite3, 1 process",
                rates["raw", 1],
            )
        )
        rows.append(
            measured(
                "processes on one file",
                f"backend, {n} processes ({rounds} rounds)",
                "lifecycles/s",
                rates["backend", n],
                "backend, 1 process",
                rates["backend", 1],
                f">= raw's ({raw_ratio:.2f})",
                lambda r, raw_ratio=raw_ratio: r >= raw_ratio,
            )
        )
    return rows


def watched_writes(work: Path, quick: bool, rounds: int) -> tuple[list[Row], float]:
    counts = (0, 100, 500)
    rates, unary, server_rss = asyncio.run(watchers.writes_with_watchers(work, counts, 200 if quick else 500, rounds))
    rows = [
        measured(
            "watchers (server)",
            f"writes/s with {n} idle watchers",
            "writes/s",
            rates[n],
            "0 watchers",
            rates[0],
            ">= 0.90",
            lambda r: r >= 0.9,
        )
        for n in counts[1:]
    ]
    rows += [
        measured(
            "watchers (server)",
            f"GetExecution/s on a client carrying {n} watches",
            "calls/s",
            unary[n],
            "0 watches",
            unary[0],
            ">= 0.90",
            lambda r: r >= 0.9,
        )
        for n in counts[1:]
    ]
    return rows, server_rss


def latency(work: Path, quick: bool, rounds: int) -> list[Row]:
    results = asyncio.run(watchers.watch_latency(work, 50 if quick else 200, rounds))
    return [
        measured(
            "watch latency",
            f"write -> watcher, {name}",
            "ms",
            [t * 1e3 for t in results[name][0]],
            "the write call itself",
            [t * 1e3 for t in results[name][1]],
        )
        for name in ("in-process", "remote")
    ]


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


# What `stigmer execution list` (local) imports, in the order it pays for it. Each step adds its group to
# every step before it, so the steps' costs (each against the step before, in the same round) add up to
# the whole command's; the last row is the command run itself against all of it.
LIST_IMPORT_STEPS = (
    ("Python itself", "pass"),
    ("+ click", "import click"),
    ("+ asyncio, sqlite3 (stdlib the local backend needs)", "import asyncio, sqlite3"),
    # betterproto2 reads its own version with importlib.metadata; the CLI hands it the version first.
    (
        "+ betterproto2 (its version from the CLI, cli/_betterproto2_version.py)",
        "from stigmer_backend.cli import _betterproto2_version; _betterproto2_version.install(); import betterproto2",
    ),
    ("+ grpclib.server, h2 (betterproto2.grpclib: the generated service base)", "import betterproto2.grpclib"),
    ("+ google.protobuf descriptors (gen's reflection option)", "import google.protobuf.descriptor_pool"),
    ("+ dateutil (gen's well-known types)", "import dateutil.parser"),
    ("+ the generated module itself (gen/)", "import stigmer_backend.gen.stigmer.backend.v1"),
    (
        "+ ours: CLI, SQLite backend, rules",
        "import stigmer_backend.cli.main, stigmer_backend.cli.executions, stigmer_backend.cli._backends, "
        "stigmer_backend.backends.sqlite",
    ),
)


def cli_startup(work: Path, rounds: int) -> list[Row]:
    stigmer = str(Path(sys.executable).with_name("stigmer"))
    home = work / "cli-home"
    home.mkdir(mode=0o700)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    # An installed package has its bytecode (pip compiles it, as it did click's); an editable install under
    # PYTHONDONTWRITEBYTECODE would recompile our sources on every run, which no user pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    commands = {
        "click": [sys.executable, "-c", "import click"],
        "help": [stigmer, "--help"],
        "list": [stigmer, "execution", "list"],
    }
    steps = [name for name, _ in LIST_IMPORT_STEPS]
    for n, name in enumerate(steps):
        commands[name] = [sys.executable, "-c", "; ".join(code for _, code in LIST_IMPORT_STEPS[: n + 1])]
    for command in commands.values():  # creates and migrates the database, and the bytecode, as a first use would
        _wall(command, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds * 4):
        for name, command in commands.items():
            times[name].append(_wall(command, env))
    return [
        measured(
            "CLI start-up",
            "stigmer --help",
            "ms",
            [t * 1e3 for t in times["help"]],
            'python -c "import click"',
            [t * 1e3 for t in times["click"]],
            "<= 1.5",
            lambda r: r <= 1.5,
        ),
        measured(
            "CLI start-up",
            "stigmer execution list (local, empty)",
            "ms",
            [t * 1e3 for t in times["list"]],
            'python -c "import click"',
            [t * 1e3 for t in times["click"]],
            "<= 3",
            lambda r: r <= 3,
        ),
        *_list_breakdown(times, steps),
    ]


def _list_breakdown(times: dict[str, list[float]], steps: list[str]) -> list[Row]:
    """Where `execution list`'s time goes: each import step's added cost, in `import click` units."""
    rows = [
        measured(
            "list start-up by import",
            steps[0],
            "ms",
            [t * 1e3 for t in times[steps[0]]],
            "import click",
            [t * 1e3 for t in times["click"]],
        )
    ]
    for before, step in [*itertools.pairwise(steps), (steps[-1], "list")]:
        added = [(t - b) * 1e3 for t, b in zip(times[step], times[before], strict=True)]
        figure = "+ running the command (open, query, print, exit)" if step == "list" else step
        rows.append(
            measured("list start-up by import", figure, "ms", added, "import click", [t * 1e3 for t in times["click"]])
        )
    return rows


def runner_rss(work: Path, quick: bool, rounds: int) -> Row:
    """Peak RSS of ``stigmer runner start`` draining executions (4 at once) vs a bare interpreter (``runner_rss``)."""
    runner, baseline = runner_rss_rounds(work, 100 if quick else 400, rounds)
    return measured("memory", "stigmer runner peak RSS", "MiB", runner, BASELINE, baseline)


def runner_growth(work: Path, quick: bool, rounds: int) -> Row:
    """Whether a runner grows with the work it has done: its peak RSS after many executions vs after few.

    Rounds alternate the two sizes. A context per model call (the CA bundle loaded each time) made
    it 59 -> 87 MiB over 50 -> 800 executions; nothing per execution may stay.
    """
    few, many = 50, (200 if quick else 800)
    after_few: list[float] = []
    after_many: list[float] = []
    for r in range(rounds):
        for count, peaks in ((few, after_few), (many, after_many)):
            directory = work / f"{count}-executions-{r}"
            directory.mkdir()
            peaks += runner_rss_rounds(directory, count, 1)[0]
    return measured(
        "memory",
        f"stigmer runner peak RSS after {many} executions",
        "MiB",
        after_many,
        f"after {few}",
        after_few,
        "<= 1.1",
        lambda r: r <= 1.1,
    )


def bare_python_rss() -> float:
    """Peak RSS (MiB) of an interpreter that imports grpclib's server, for scale."""
    return interpreter_rss_mib("grpclib.server")


def memory(work: Path, quick: bool, rounds: int, extra: dict) -> list[Row]:
    """Peak RSS of the server (after the watcher load, else after remote_path's) and of the runner."""
    remote_rss = extra.get("rss", {})
    if remote_rss.get("bare"):
        baseline_name, baseline = "bare grpclib server", remote_rss["bare"]
    else:
        baseline_name, baseline = "python importing grpclib.server", bare_python_rss()
    rows = []
    server = extra.get("server_peak_rss_mib_after_500_watchers") or remote_rss.get("server")
    if server is not None:
        rows.append(
            Row("memory", "stigmer server peak RSS", "MiB", server, baseline_name, baseline, server / baseline,
                None, None, "", None, 1)
        )  # fmt: skip
    rows.append(runner_rss(work, quick, rounds))
    rows.append(runner_growth(work, quick, rounds))
    return rows


# -- the table -----------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def render(rows: list[Row]) -> str:
    lines = [
        "| section | figure | median | baseline (median) | ratio | min-max | goal | met |",
        "| --- | --- | ---: | --- | ---: | --- | --- | --- |",
    ]
    for r in rows:
        spread = "-" if r.ratio_min is None else f"{r.ratio_min:.2f}-{r.ratio_max:.2f}"
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            f"| {r.section} | {r.figure} | {_number(r.value)} {r.unit} | {r.baseline_name}: {_number(r.baseline)} "
            f"| {'-' if r.ratio is None else f'{r.ratio:.2f}'} | {spread} | {r.goal} | {met} |"
        )
    return "\n".join(lines)


README = HERE.parent / "README.md"
_MARKERS = ("<!-- benchmark-table -->", "<!-- /benchmark-table -->")


def update_readme(payload: dict, table: str) -> None:
    """Replaces what stands between the README's benchmark markers with this run's table."""
    text = README.read_text()
    start, end = text.index(_MARKERS[0]) + len(_MARKERS[0]), text.index(_MARKERS[1])
    section = (
        f"\nLatest run: {payload['date']} UTC, `{payload['command']}`, {payload['rounds']} rounds; "
        f"{payload['machine']}.\n\n{table}\n"
    )
    README.write_text(text[:start] + section + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller tables, fewer rounds")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 3 quick, 5 full)")
    parser.add_argument("--json", type=Path, default=HERE / "latest.json", help="where to write the results")
    parser.add_argument(
        "--only", nargs="*", help="sections: lifecycle remote pages processes watchers latency cli rss (default all)"
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="also put the table, date, machine and command in README.md"
    )
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    only = set(args.only or ["lifecycle", "remote", "pages", "processes", "watchers", "latency", "cli", "rss"])
    machine = (
        f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f} at start"
    )
    started = datetime.now(UTC)
    print(f"stigmer benchmarks {'(--quick) ' if args.quick else ''}{started:%Y-%m-%d %H:%M} UTC; {machine}", flush=True)
    rows: list[Row] = []
    extra: dict = {}
    with tempfile.TemporaryDirectory(prefix="stigmer-bench-") as tmp:
        work = Path(tmp)

        def section(name: str, run):
            if name not in only:
                return None
            print(f"\n[{name}]", flush=True)
            directory = work / name
            directory.mkdir()
            return run(directory)

        rows += section("lifecycle", lambda d: lifecycle(d, args.quick, rounds)) or []
        remote_result = section("remote", lambda d: remote(args.quick))
        if remote_result:
            rows += remote_result[0]
            extra.update(remote_result[1])
        rows += section("pages", lambda d: pages(d, args.quick, rounds)) or []
        rows += section("processes", lambda d: scaling(d, args.quick, rounds)) or []
        watched = section("watchers", lambda d: watched_writes(d, args.quick, rounds))
        if watched:
            rows += watched[0]
            extra["server_peak_rss_mib_after_500_watchers"] = watched[1]
        rows += section("latency", lambda d: latency(d, args.quick, rounds)) or []
        rows += section("cli", lambda d: cli_startup(d, rounds)) or []
        rows += section("rss", lambda d: memory(d, args.quick, rounds, extra)) or []
    table = render(rows)
    print("\n" + table)
    command = "benchmarks/run" + "".join(f" {a}" for a in sys.argv[1:])
    payload = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine,
        "command": command,
        "rounds": rounds,
        "rows": [asdict(r) for r in rows],
        **extra,
    }
    args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.update_readme:
        update_readme(payload, table)
    print(f"\nwritten to {args.json}; took {(datetime.now(UTC) - started).total_seconds():.0f} s")


if __name__ == "__main__":
    main()
