"""The mutation harness: run the conformance suite against every broken backend; each must fail at its test.

``python -m tests.conformance.mutation [--json PATH] [NAME ...]`` runs, for each
mutant, its named conformance test alone (so the kill is that test's, and the
whole family takes seconds), all in this one process, and prints the kill
figure by class of contract sentence. The exit code is 0 only if every mutant was killed at its named
test, by a failure that says what the backend did wrong: an assertion (the suite's messages name the
contract clause) or the status the backend answered. A crash of the suite itself (``TypeError`` on a
field the backend left unset, ``raise None``) is not a kill: it tells a backend author nothing.
``tests/conformance/test_mutation.py`` runs it in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Generator
from pathlib import Path

import pytest
from grpclib import GRPCError

from stigmer_backend.conformance import SUITE_DIR, conformance_id

from .broken_backends import MUTANTS, Mutant
from .broken_server import SERVER_MUTANTS

ALL = [*MUTANTS, *SERVER_MUTANTS]
_ARGS = ["-c", os.devnull, "--rootdir", str(SUITE_DIR), "-p", "no:cacheprovider", "-o", "python_files=*.py", "-q",
         "-W", "ignore::pytest.PytestAssertRewriteWarning", "-p", "no:asyncio"]  # fmt: skip


class _Why:
    """Records the exception each failing test raised, by conformance id."""

    def __init__(self) -> None:
        self.errors: dict[str, BaseException] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed and call.excinfo is not None:
            self.errors.setdefault(conformance_id(item), call.excinfo.value)
        return report


def said_what_was_wrong(error: BaseException | None) -> bool:
    """A failure a backend author can act on: an assertion of the suite or a status the backend answered."""
    return isinstance(error, AssertionError | GRPCError)


class _Only:
    """Deselects every test but the given conformance ids."""

    def __init__(self, *test_ids: str) -> None:
        self.test_ids = set(test_ids)

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep = [item for item in items if conformance_id(item) in self.test_ids]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


def run(mutant: Mutant, workdir: Path) -> dict:
    """One suite run against ``mutant``: whether its named test failed, and everything that failed."""
    report = workdir / f"{mutant.name}.json"
    module = SUITE_DIR / (mutant.must_fail.split("/", 1)[0] + ".py")
    args = [str(module), *_ARGS, "--stigmer-json-report", str(report)]
    if any(mutant is m for m in SERVER_MUTANTS):
        token = workdir / "token"
        token.write_text("mutation-harness-token\n")
        token.chmod(0o600)
        command = f"{sys.executable} -m tests.conformance.broken_server {mutant.name} {token}"
        args += ["--stigmer-server-command", command, "--stigmer-token-file", str(token)]
    else:
        args += ["--stigmer-target", f"tests.conformance.broken_backends:{mutant.name}"]
    started = time.monotonic()
    why = _Why()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = pytest.main(args, plugins=[_Only(mutant.must_fail), why])
    summary = json.loads(report.read_text()) if report.exists() else {}
    failed = summary.get("failed", [])
    error = why.errors.get(mutant.must_fail)
    reported = next((f for f in summary.get("failures", []) if f["id"] == mutant.must_fail), {})
    return {
        "name": mutant.name,
        "kind": mutant.kind,
        "must_fail": mutant.must_fail,
        "violation": mutant.violation,
        "killed": code == pytest.ExitCode.TESTS_FAILED and failed == [mutant.must_fail] and said_what_was_wrong(error),
        "failed": failed,
        "error": type(error).__name__ if error is not None else "",
        "reason": reported.get("reason", ""),
        "clause": reported.get("clause", ""),
        "seconds": round(time.monotonic() - started, 2),
        "output": "" if failed == [mutant.must_fail] and said_what_was_wrong(error) else printed.getvalue()[-3000:],
    }


def control(workdir: Path) -> tuple[int, str]:
    """The named tests of the in-process mutants against the unbroken ``MemoryBackend``: all must pass,
    or a test failing for every backend would count as a kill."""
    report = workdir / "control.json"
    args = [str(SUITE_DIR), *_ARGS, "--stigmer-json-report", str(report)]
    args += ["--stigmer-target", "stigmer_backend.backends.memory:MemoryBackend"]
    named = [m.must_fail for m in MUTANTS]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = pytest.main(args, plugins=[_Only(*named)])
    totals = json.loads(report.read_text())["totals"] if report.exists() else {}
    # A test of a capability the memory backend has (secrets_absent) is skipped there, as optional.
    ok = code == pytest.ExitCode.OK and totals.get("passed", 0) + totals.get("skipped", 0) == len(set(named))
    return (0 if ok else 1), printed.getvalue()[-3000:]


def kill_table(results: list[dict]) -> str:
    """The kill figure by class, as the Markdown table the README shows."""
    total, killed = Counter(r["kind"] for r in results), Counter(r["kind"] for r in results if r["killed"])
    rows = ["| class of contract sentence | mutants | killed |", "| --- | ---: | ---: |"]
    rows += [f"| {kind} | {total[kind]} | {killed[kind]} |" for kind in sorted(total)]
    rows.append(f"| **all** | **{sum(total.values())}** | **{sum(killed.values())}** |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write every result here")
    parser.add_argument("names", nargs="*", help="only these mutants")
    options = parser.parse_args(argv)
    chosen = [m for m in ALL if not options.names or m.name in options.names]
    with tempfile.TemporaryDirectory(prefix="stigmer-mutation-") as workdir:
        failed_control, output = control(Path(workdir))
        if failed_control:
            print(f"control run: the named tests do not all pass against the unbroken MemoryBackend\n{output}")
            return 2
        results = [run(mutant, Path(workdir)) for mutant in chosen]
    for result in results:
        verdict = "killed" if result["killed"] else "SURVIVED"
        print(f"{verdict:8} {result['name']:32} {result['seconds']:6.2f}s  {result['must_fail']}")
    print(kill_table(results))
    for result in results:
        if not result["killed"]:
            print(f"\n{result['name']} survived ({result['violation']}); failed: {result['failed']}", end="")
            print(f" with {result['error']}: {result['reason']}" if result["error"] else "")
            print(result["output"])
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["killed"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
