"""The mutation harness kills every broken backend at its named test, and the README reports the figure."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conformance import mutation
from tests.conftest import REPO, toolchain_env


def test_every_mutant_fails_the_suite_at_its_named_test(tmp_path):
    report = tmp_path / "mutation.json"
    env = toolchain_env()
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "tests.conformance.mutation", "--json", str(report)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    results = json.loads(report.read_text())
    assert {r["name"] for r in results} == {m.name for m in mutation.ALL}
    assert all(r["killed"] for r in results)
    table = mutation.kill_table(results)
    assert table in (REPO / "README.md").read_text(), f"README.md should report the kill figure:\n{table}"


def test_every_mutant_names_an_existing_test_and_a_class():
    from stigmer_backend.conformance.traceability import suite_test_ids

    ids = suite_test_ids()
    assert len({m.name for m in mutation.ALL}) == len(mutation.ALL)
    for mutant in mutation.ALL:
        assert mutant.must_fail in ids, f"{mutant.name}: no conformance test {mutant.must_fail!r}"
        assert mutant.kind and mutant.violation, mutant.name
