"""`stigmer local start | status | stop`: the stack's processes, their health, and nothing left behind."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from stigmer_backend.fullstack.requirements import MissingExtra, require_sdk
from tests.runner.conftest import STIGMER, Home

from .conftest import Tier2, pids_alive

ONE_LINE_HINT = "Tier 2 needs the Temporal SDK (temporalio): pip install 'stigmer-backend[fullstack]'"


def without_sdk(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` for a `stigmer` whose interpreter cannot import temporalio, as in a venv without the extra."""
    hide = tmp_path / "no-temporalio"
    hide.mkdir()
    # A None entry in sys.modules makes find_spec answer None and every import fail, as if not installed.
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['temporalio'] = None\n")
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(hide), env.get("PYTHONPATH")]))}


def test_a_cli_without_the_temporal_sdk_says_so_in_one_line_and_creates_nothing_while_the_stack_runs(
    tier2: Tier2, tmp_path: Path
) -> None:
    env = without_sdk(tier2.home.env, tmp_path)

    def stigmer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([STIGMER, *args], env=env, capture_output=True, text=True, timeout=120)

    before = tier2.home.run("execution", "list", "-o", "json").stdout
    for detach in ([], ["--detach"]):
        refused = stigmer("agent", "execute", "bot", "hello", *detach)
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr == f"Error: the local stack runs (`stigmer local status`); {ONE_LINE_HINT}\n"
        assert refused.stdout == ""
    # Nothing was created: an execution without its workflow would stay PENDING, as no worker polls the backend.
    assert tier2.home.run("execution", "list", "-o", "json").stdout == before

    # A cancel still cancels in the backend; the workflow ends as its activity sees it.
    tier2.model.streaming.clear()
    execution_id = tier2.home.run("agent", "execute", "slow", "think", "--detach").stdout.strip()
    assert tier2.model.streaming.wait(60)
    cancelled = stigmer("execution", "cancel", execution_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "Traceback" not in cancelled.stderr and ONE_LINE_HINT in cancelled.stderr
    ended = json.loads(tier2.home.run("execution", "get", execution_id, "-o", "json").stdout)["status"]
    assert ended["phase"] == "EXECUTION_PHASE_CANCELLED"


def test_status_is_healthy_a_second_start_is_refused_and_stop_leaves_no_process(tier2: Tier2) -> None:
    status = tier2.stigmer("local", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()}
    assert set(lines) == {"supervisor", "temporal", "server", "worker-1", "worker-2"}
    assert "running" in lines["supervisor"] and f"pid {tier2.state['supervisor']['pid']} " in lines["supervisor"]
    assert "SERVING" in lines["temporal"] and tier2.state["ui_address"] in lines["temporal"]
    assert "SERVING" in lines["server"] and tier2.state["server_endpoint"] in lines["server"]
    assert "alive" in lines["worker-1"] and "alive" in lines["worker-2"]
    local = tier2.home.path / "local"
    assert stat.S_IMODE(local.stat().st_mode) == 0o700 and stat.S_IMODE((local / "token").stat().st_mode) == 0o600
    for part in [*tier2.state["parts"], tier2.state["supervisor"]]:  # a pid file and a log each, as status shows
        assert (local / f"{part['name']}.pid").read_text() == f"{part['pid']}\n"
        assert part["log"] == str(local / f"{part['name']}.log") and f"pid {part['pid']} " in lines[part["name"]]

    logs = tier2.stigmer("local", "logs", "worker-2", "-n", "5")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.startswith(f"==> {tier2.home.path / 'local' / 'worker-2.log'} <==\n")
    assert " polling stigmer-executions on " in logs.stdout and len(logs.stdout.splitlines()) <= 6
    every = tier2.stigmer("local", "logs").stdout
    assert [line for line in every.splitlines() if line.startswith("==> ")] == [
        f"==> {tier2.home.path / 'local' / name}.log <=="
        for name in ("server", "supervisor", "temporal", "worker-1", "worker-2")
    ]
    unknown = tier2.stigmer("local", "logs", "worker-9")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "Error: no log for 'worker-9' (known: server, supervisor, temporal, worker-1, worker-2)\n",
    )

    again = tier2.stigmer("local", "start")
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: the local stack is already running (`stigmer local status`; `stigmer local stop` first)"
    )
    pids = [part["pid"] for part in tier2.state["parts"]] + [tier2.state["supervisor"]["pid"]]
    assert len(pids_alive(pids)) >= 5  # the refused start left the running stack as it was

    # An execution running when the stack stops gets the grace (2 s here), then is cancelled, not left RUNNING.
    tier2.model.streaming.clear()
    execution_id = tier2.home.run("agent", "execute", "slow", "think", "--detach").stdout.strip()
    assert tier2.model.streaming.wait(60)
    stopped = tier2.stigmer("local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "did not stop" not in stopped.stderr, stopped.stderr  # graceful: no part needed SIGKILL
    assert pids_alive(pids) == []
    assert list(local.glob("*.pid")) == [] and not (local / "stack.json").exists()
    shown = tier2.home.run("execution", "get", execution_id, "-o", "json")
    ended = json.loads(shown.stdout)["status"]
    assert ended["phase"] == "EXECUTION_PHASE_CANCELLED"
    assert re.fullmatch(r"the Temporal activity on local-worker-\d-\d+ was cancelled", ended["message"])
    after = tier2.stigmer("local", "status")
    assert after.returncode == 1
    assert after.stderr.strip() == "Error: the local stack is not running (`stigmer local start`)"

    # Started again over the same Temporal database: the stack comes back whole.
    restarted = tier2.stigmer("local", "start", "--workers", "1")
    assert restarted.returncode == 0, restarted.stderr
    assert tier2.stigmer("local", "status").returncode == 0


def test_a_missing_extra_is_one_line_naming_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "temporalio" else real(name, *a))
    with pytest.raises(MissingExtra) as raised:
        require_sdk()
    assert str(raised.value) == ONE_LINE_HINT


def test_local_start_without_the_extra_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    env = without_sdk(Home(path).env, tmp_path)
    for command in (["start"], ["status"]):
        refused = subprocess.run([STIGMER, "local", *command], env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert refused.stderr == f"Error: {ONE_LINE_HINT}\n", refused.stderr
    assert not (path / "local").exists()  # no pid file, no log, no Temporal database
