"""``benchmarks/postgres_throughput.py --quick`` still runs end to end (its figures are not judged here)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_postgres_benchmark_runs_and_reports_every_figure(cluster):  # cluster: skipped without PostgreSQL
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/postgres_throughput.py"), "--quick", "--clients", "4"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    names = ["raw psycopg", "in-process", "one replica", "two replicas"]
    rows = re.findall(rf"^  ({'|'.join(names)})\s+([\d,]+)/s .* ([\d.]+) x raw$", result.stdout, re.M)
    assert [row[0] for row in rows] == names, result.stdout
    raw = float(rows[0][1].replace(",", ""))
    for _, rate, ratio in rows:
        assert float(rate.replace(",", "")) > 0
        assert abs(float(ratio) - float(rate.replace(",", "")) / raw) < 0.02
