"""What ``stigmer conformance run`` prints for a person: a preflight line, a line per failure, areas, the verdict.

Every run is the real command in a separate process, as a third party runs it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stigmer_backend.server.launch import ServerProcess
from tests.certificates import make_tls_files
from tests.conftest import REPO, toolchain_env

STIGMER = str(Path(sys.executable).parent / "stigmer")


def conformance(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[int, list[str], dict]:
    report = tmp_path / "summary.json"
    env = toolchain_env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("STIGMER_CONFORMANCE_TOKEN", None)
    result = subprocess.run(
        [STIGMER, "conformance", "run", "--json-report", str(report), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, lines, json.loads(report.read_text()) if report.exists() else {}


def test_a_stub_backend_gets_a_short_report_naming_every_failure(tmp_path):
    code, lines, summary = conformance(tmp_path, "--target", "tests.conformance.stub_backend:StubBackend")
    assert code == 1
    assert len(lines) < 100, "\n".join(lines[:200])
    assert not any("Traceback" in line or line.startswith(("E ", "INTERNALERROR")) for line in lines)
    shown = "\n".join(lines)
    failed = summary["failed"]
    assert len(failed) > 100, "the stub should fail most of the suite"
    missing = [test_id for test_id in failed if test_id not in shown]
    assert not missing, f"failures without their id in the report: {missing[:5]}"
    # Expected against actual, and the contract sentence checked.
    assert "expected INVALID_ARGUMENT, got UNIMPLEMENTED" in shown
    assert "expected a response from ApplyAgentInstance, got UNIMPLEMENTED" in shown
    assert "[checks BackendService.GetExecution#" in shown
    # A table per area, then the verdict, last.
    assert any(line.split()[:2] == ["validation", "0"] for line in lines)
    assert lines[-1].startswith("stigmer conformance ") and lines[-1].endswith("NOT CONFORMANT")
    assert {f["id"] for f in summary["failures"]} == set(failed)


def test_one_failing_test_is_one_line_with_expected_actual_and_clause(tmp_path):
    known = tmp_path / "known.txt"
    known.write_text("state_machine/UpdateExecutionStatus/transition/PENDING->RUNNING/accepted\n")
    code, lines, _ = conformance(
        tmp_path, "--target", "tests.conformance.broken_backends:TerminalRerun",
        "--known-failures", str(known), "-k", "test_transition",
    )  # fmt: skip
    assert code == 1
    failures = [line for line in lines if line.startswith("FAIL ")]
    by_id = {line.split(":", 1)[0].removeprefix("FAIL "): line for line in failures}
    rerun = by_id["state_machine/UpdateExecutionStatus/transition/SUCCEEDED->RUNNING/rejected"]
    assert "expected the call to fail with FAILED_PRECONDITION, but it succeeded" in rerun and "[checks " in rerun
    passed = by_id["state_machine/UpdateExecutionStatus/transition/PENDING->RUNNING/accepted"]
    assert "listed in --known-failures, but it passed" in passed
    assert lines[-1].endswith("NOT CONFORMANT")


def test_verbose_keeps_the_tracebacks_and_the_verdict_stays_last(tmp_path):
    code, lines, _ = conformance(
        tmp_path, "--target", "tests.conformance.broken_backends:TerminalRerun", "-k", "test_transition", "-v"
    )
    assert code == 1
    assert any(line.startswith("E ") for line in lines), "no traceback detail with -v"
    assert any(line.startswith("FAIL state_machine/") for line in lines)
    assert lines[-1].endswith("NOT CONFORMANT")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_error_line(code: int, lines: list[str]) -> str:
    shown = [line for line in lines if line.strip()]
    assert code == 4 and len(shown) == 1, "\n".join(lines[:50])
    assert shown[0].startswith("ERROR: ")
    return shown[0]


def test_an_unreachable_target_is_one_line(tmp_path):
    port = _free_port()
    line = _one_error_line(*conformance(tmp_path, "--target", f"127.0.0.1:{port}", timeout=60)[:2])
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in line


def test_a_missing_or_wrong_token_is_one_line(tmp_path, served):
    line = _one_error_line(*conformance(tmp_path, "--target", served.endpoint, timeout=60)[:2])
    assert "requires a bearer token (UNAUTHENTICATED): give --token-file FILE" in line
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")
    args = ("--target", served.endpoint, "--token-file", str(wrong))
    assert "refused the bearer token (UNAUTHENTICATED)" in _one_error_line(
        *conformance(tmp_path, *args, timeout=60)[:2]
    )


def test_tls_against_plaintext_and_plaintext_against_tls_are_one_line(
    tmp_path, served, token_file, db_path, server_env
):
    args = ("--target", served.endpoint, "--token-file", str(token_file), "--tls")
    line = _one_error_line(*conformance(tmp_path, *args, timeout=60)[:2])
    assert "TLS handshake" in line and "plaintext server" in line
    files = make_tls_files(tmp_path)
    tls_args = ["--db", str(db_path), "--token-file", str(token_file), "--tls-cert", str(files.cert)]
    with ServerProcess.start([*tls_args, "--tls-key", str(files.key)], env=server_env) as tls_server:
        args = ("--target", tls_server.endpoint, "--token-file", str(token_file))
        line = _one_error_line(*conformance(tmp_path, *args, timeout=60)[:2])
        assert "if it serves TLS, add --tls or --ca FILE" in line


@pytest.mark.parametrize("target", ["nosuchmodule:make", "no-such-kind"])
def test_a_target_that_cannot_be_opened_is_one_line(tmp_path, target):
    line = _one_error_line(*conformance(tmp_path, "--target", target, timeout=60)[:2])
    assert target in line
