"""The conformance suite passes real backends and fails each deliberately broken one.

Every run is ``stigmer conformance run`` in a separate process, exactly as a
third party would run it, with its JSON and JUnit reports checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import REPO, toolchain_env

STIGMER = str(Path(sys.executable).parent / "stigmer")


def conformance(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    report = tmp_path / "summary.json"
    env = toolchain_env()
    env["PYTHONPATH"] = str(REPO)  # so the broken backends in tests/ import as module:factory
    result = subprocess.run(
        [STIGMER, "conformance", "run", "--json-report", str(report), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, summary, result.stdout + result.stderr


def test_sqlite_backend_conforms_with_reports(tmp_path):
    junit = tmp_path / "junit.xml"
    code, summary, output = conformance(tmp_path, "--target", "sqlite", "--junit-xml", str(junit))
    assert code == 0, output[-3000:]
    assert summary["conformant"] and summary["totals"]["passed"] >= 150
    assert summary["backend_kind"] == "sqlite" and summary["contract_version"] == "1.0"
    assert "CAPABILITY_DURABLE_STORAGE" in summary["capabilities"]
    assert {"state_machine", "validation", "watch", "pagination", "concurrency", "stateful", "durability"} <= set(
        summary["categories"]
    )
    assert summary["categories"]["durability"] == {"passed": 1}, "a restartable target runs the durability test"
    ids = {p.get("value") for p in ET.parse(junit).iter("property") if p.get("name") == "conformance_id"}
    assert "state_machine/UpdateExecutionStatus/transition/SUCCEEDED->RUNNING/rejected" in ids
    assert "CONFORMANT" in output.splitlines()[-2] or any(line.endswith("— CONFORMANT") for line in output.splitlines())


def test_memory_backend_conforms(tmp_path):
    code, summary, output = conformance(tmp_path, "--target", "stigmer_backend.backends.memory:MemoryBackend")
    assert code == 0, output[-3000:]
    assert summary["conformant"] and "CAPABILITY_SECRETS" in summary["capabilities"]


# Each deliberately broken backend failing at its named test: see test_mutation.py (the mutation harness).


def test_known_failures_may_fail_but_not_pass(tmp_path):
    known = tmp_path / "known.txt"
    known.write_text(
        "# the rerun defect, known and tracked\nstate_machine/UpdateExecutionStatus/transition/SUCCEEDED->RUNNING/*\n"
    )
    args = [
        "--target",
        "tests.conformance.broken_backends:TerminalRerun",
        "--known-failures",
        str(known),
        "-k",
        "test_transition",
    ]
    code, summary, output = conformance(tmp_path, *args)
    assert code == 0, output[-3000:]
    assert summary["totals"]["known-failure"] == 1 and summary["conformant"]

    known.write_text("state_machine/UpdateExecutionStatus/transition/PENDING->RUNNING/accepted\n")
    code, summary, output = conformance(tmp_path, *args)
    assert code != 0, "a listed test that passes must fail the run"
    assert "state_machine/UpdateExecutionStatus/transition/PENDING->RUNNING/accepted" in summary["failed"]


def test_required_behaviour_cannot_be_skipped(tmp_path):
    """A skip that is not for an optional capability counts as a failure."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "skipper.py").write_text(
        "import pytest\n\n"
        "def pytest_runtest_setup(item):\n"
        "    if 'transition' in item.name:\n"
        "        pytest.skip('not today')\n"
    )
    env_path = os.pathsep.join([str(plugin_dir), str(REPO)])
    report = tmp_path / "summary.json"
    result = subprocess.run(
        [STIGMER, "conformance", "run", "--target", "stigmer_backend.backends.memory:MemoryBackend",
         "--json-report", str(report), "-k", "test_transition", "-p", "skipper"],
        cwd=tmp_path, env={**toolchain_env(), "PYTHONPATH": env_path}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    summary = json.loads(report.read_text())
    assert summary["totals"].get("failed", 0) >= 25 and not summary["conformant"]


def test_a_server_in_another_process_conforms_through_the_bare_stub(tmp_path):
    """``--target host:port``: the generated stub only, as a third party's backend would be reached."""
    from stigmer_backend.server.launch import ServerProcess
    from tests.remote_fixtures import isolated_env, write_token_file

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    token = write_token_file(tmp_path / "token", "conformance-token-" + os.urandom(8).hex())
    args = ["--db", str(tmp_path / "served.db"), "--token-file", str(token)]
    with ServerProcess.start(args, env=isolated_env(home)) as server:
        junit = tmp_path / "junit.xml"
        code, summary, output = conformance(
            tmp_path, "--target", server.endpoint, "--token-file", str(token), "--junit-xml", str(junit)
        )
    assert code == 0, output[-3000:]
    assert summary["conformant"] and summary["target"] == server.endpoint
    assert "CAPABILITY_AUTHENTICATION" in summary["capabilities"]
    assert summary["categories"]["durability"] == {"skipped": 1}, "a bare address cannot be restarted"
    cases = list(ET.parse(junit).iter("testcase"))
    assert len(cases) == sum(summary["totals"].values())


def test_roles_are_checked_through_a_server_command(tmp_path):
    """`--server-command` reaches an endpoint like `host:port`: the authorization module runs, not skips."""
    import secrets

    from tests.remote_fixtures import isolated_env, write_token_file

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    tokens = {role: secrets.token_hex(20) for role in ("admin", "person", "runner-1", "runner-2")}
    lines = "\n".join(f"{role.split('-')[0]} {role} {token}" for role, token in tokens.items())
    tokens_file = write_token_file(tmp_path / "tokens", lines)
    admin = write_token_file(tmp_path / "admin-token", tokens["admin"])
    server = f"{STIGMER} server --port 0 --db {tmp_path / 'served.db'} --tokens-file {tokens_file}"
    report = tmp_path / "summary.json"
    env = {**isolated_env(home), "STIGMER_CONFORMANCE_ROLES": str(tokens_file)}
    result = subprocess.run(
        [STIGMER, "conformance", "run", "--server-command", server, "--token-file", str(admin),
         "--json-report", str(report), "-k", "People or Runners"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert json.loads(report.read_text())["categories"] == {"authorization": {"passed": 5}}
