"""``benchmarks/run`` runs end to end and writes what it prints (its figures are not judged here)."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import REPO


def test_the_benchmark_report_writes_each_figure_with_its_baseline_and_ratio(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [str(REPO / "benchmarks/run"), "--quick", "--rounds", "1", "--only", "cli", "rss", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["command"].startswith("benchmarks/run --quick") and report["date"] and report["machine"]
    figures = {row["figure"]: row for row in report["rows"]}
    for name in ("stigmer --help", "stigmer execution list (local, empty)"):
        row = figures[name]
        assert row["value"] > 0 and row["baseline"] > 0
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]  # the median of the per-round ratios
        assert row["ratio_min"] <= row["value"] / row["baseline"] <= row["ratio_max"]
        assert row["met"] == (row["ratio"] <= (1.5 if name == "stigmer --help" else 3))
        assert f"| {name} |" in result.stdout
    assert "stigmer runner peak RSS" in figures
