"""``benchmarks/remote_path.py --quick`` still runs end to end (its figures are not judged here)."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks/remote_path.py"


def test_the_remote_path_benchmark_runs_and_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)

    # Each ratio is the spread of the per-round ratios of the subject to a baseline measured in the same round.
    def check(row: dict, subject: str, baseline: str) -> None:
        mine, theirs = row[subject]["rounds"], row[baseline]["rounds"]
        assert len(mine) == len(theirs) == figures["rounds"] and all(value > 0 for value in mine + theirs)
        per_round = [a / b for a, b in zip(mine, theirs, strict=True)]
        ratio = row["ratios"][baseline]
        assert ratio["median"] == statistics.median(per_round)
        assert (ratio["min"], ratio["max"]) == (min(per_round), max(per_round))

    for figure in ("p50_ms", "cpu_ms"):
        check(figures["list50"][figure], "remote", "in_process")
    for scenario in ("lifecycle", "get"):
        assert set(figures[scenario]) == {"1", "16"}
        for row in figures[scenario].values():
            for figure in ("per_s", "cpu_ms"):
                check(row[figure], "remote", "bare")
    assert figures["sizes"]["list"] > 50 * figures["sizes"]["get"] // 2  # a page of 50 executions, not one

    spec = importlib.util.spec_from_file_location("remote_path", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.report(figures)
    for line in ("list-50 p50 latency remote/in-process", "lifecycle  1 remote/bare rate", "lifecycle 16 remote/bare"):
        assert line in text
    assert "stigmer server" in text and "MiB" in text
    for row in figures["lifecycle"].values():
        # The decomposition measured in the same rounds: the serving process alone, the contract's
        # rules without storage, and the storage apart.
        for side in ("remote", "bare", "bare_memory", "bare_sqlite"):
            assert len(row["server_cpu_ms"][side]["rounds"]) == figures["rounds"]
        for side in ("bare_memory", "bare_sqlite"):
            assert f"{row['server_cpu_ms'][side]['median']:.2f}" in text

    # benchmarks/run reads the goals' rows from this text (README's table).
    spec = importlib.util.spec_from_file_location("benchmark_report", REPO / "benchmarks/report.py")
    report = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = report  # its dataclasses look their module up there
    sys.path.insert(0, str(REPO / "benchmarks"))  # for its sibling imports
    try:
        spec.loader.exec_module(report)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
        del sys.modules[spec.name]
    [listed] = report._REMOTE_LIST.findall(text)
    assert float(listed[2]) == round(figures["list50"]["p50_ms"]["ratios"]["in_process"]["median"], 2)
    cycles = {found[0]: found for found in report._REMOTE_LIFECYCLE.findall(text)}
    assert set(cycles) == {"1", "16"}
    for concurrency, found in cycles.items():
        ratio = figures["lifecycle"][concurrency]["per_s"]["ratios"]["bare"]["median"]
        assert float(found[3]) == round(ratio, 3) and found[6] == "0.70"
