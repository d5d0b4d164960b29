"""``benchmarks/remote_path.py --quick`` still runs end to end (its figures are not judged here)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_remote_path_benchmark_runs_and_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/remote_path.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+>= 0\.80", result.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["1", "16"], result.stdout
    for _, remote, bare, ratio in rows:
        remote_rate, bare_rate = (float(value.replace(",", "")) for value in (remote, bare))
        assert remote_rate > 0 and bare_rate > 0
        assert abs(float(ratio) - remote_rate / bare_rate) < 0.01
    assert re.search(r"stigmer server \d+\.\d MiB", result.stdout)
