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
    assert all(r["error"] in ("AssertionError", "GRPCError") for r in results), "a crash of the suite is no kill"
    table = mutation.kill_table(results)
    assert table in (REPO / "README.md").read_text(), f"README.md should report the kill figure:\n{table}"
    crashed_once = {r["name"]: r for r in results if r["name"] in CRASHED_ONCE}
    for name, (reason, clause) in CRASHED_ONCE.items():
        assert (crashed_once[name]["reason"], crashed_once[name]["clause"]) == (reason, clause), name


# The backends the suite used to crash on (a TypeError, `raise None`): now a failure naming the clause.
CRASHED_ONCE = {
    "NoEndTime": (
        "the backend left ExecutionStatus.end_time unset; the contract says: when the execution entered its "
        "terminal phase",
        "BackendService.UpdateExecutionStatus#aa5bdf",  # "A terminal phase ends the lease and sets `end_time`."
    ),
    "WatchEndsSilently": (
        "the watch ended normally after 0 message(s) instead of failing; the contract says: WatchExecution fails "
        "with NOT_FOUND if the execution does not exist",
        "BackendService.WatchExecution#db71fd",
    ),
}


def test_every_mutant_names_an_existing_test_and_a_class():
    from stigmer_backend.conformance.traceability import suite_test_ids

    ids = suite_test_ids()
    assert len({m.name for m in mutation.ALL}) == len(mutation.ALL)
    for mutant in mutation.ALL:
        assert mutant.must_fail in ids, f"{mutant.name}: no conformance test {mutant.must_fail!r}"
        assert mutant.kind and mutant.violation, mutant.name
