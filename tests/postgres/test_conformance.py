"""The whole conformance suite passes on PostgreSQL: in-process, and through two replicas on one database."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, toolchain_env
from tests.postgres.conftest import replica_env

STIGMER = str(Path(sys.executable).parent / "stigmer")


def run_suite(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    report = tmp_path / "summary.json"
    result = subprocess.run(
        [STIGMER, "conformance", "run", "--json-report", str(report), *args],
        cwd=tmp_path, env={**toolchain_env(), "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    summary = json.loads(report.read_text()) if report.exists() else {}
    if summary:  # the evidence a closing note quotes: counts per target, shown with -s
        print(f"\nconformance against {summary['target']}: {summary['totals']}")
    return result.returncode, summary, result.stdout + result.stderr


def test_the_suite_passes_in_process_including_restarts(tmp_path, database):
    code, summary, output = run_suite(tmp_path, "--target", database)
    assert code == 0, output[-3000:]
    assert summary["conformant"] and summary["backend_kind"] == "postgresql"
    assert summary["totals"]["passed"] >= 150
    assert summary["categories"]["durability"].get("passed", 0) >= 1, "the in-process target restarts"


def test_the_suite_passes_through_two_replicas_alternating_call_by_call(tmp_path, start_replica):
    first, second = start_replica(), start_replica()
    code, summary, output = run_suite(
        tmp_path,
        "--target",
        "tests.postgres.replicas:from_environment",
        env={"STIGMER_TEST_REPLICAS": f"{first.endpoint},{second.endpoint}"},
    )
    assert code == 0, output[-3000:]
    assert summary["conformant"] and summary["backend_kind"] == "postgresql"
    assert summary["totals"]["passed"] >= 150
    assert summary["categories"]["durability"] == {"skipped": 1}, "two replicas are not one restartable target"
    assert first.process.poll() is None and second.process.poll() is None


def test_the_suite_passes_through_a_server_it_restarts(tmp_path, database, master_key):
    env = replica_env(tmp_path / "home", master_key)
    command = shlex.join([STIGMER, "server", "--port", "0", "--backend", database])
    code, summary, output = run_suite(tmp_path, "--server-command", command, env=env)
    assert code == 0, output[-3000:]
    assert summary["conformant"] and summary["backend_kind"] == "postgresql"
    assert summary["categories"]["durability"].get("passed", 0) >= 1, "restarted on the same database"
