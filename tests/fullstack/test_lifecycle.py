"""`stigmer local start | status | stop`: the stack's processes, their health, and nothing left behind."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from stigmer_backend.fullstack.requirements import MissingExtra, require_sdk

from .conftest import pids_alive


def test_status_is_healthy_a_second_start_is_refused_and_stop_leaves_no_process(tier2):
    status = tier2.stigmer("local", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()}
    assert set(lines) == {"temporal", "server", "worker-1", "worker-2"}
    assert "SERVING" in lines["temporal"] and tier2.state["ui_address"] in lines["temporal"]
    assert "SERVING" in lines["server"] and tier2.state["server_endpoint"] in lines["server"]
    assert "alive" in lines["worker-1"] and "alive" in lines["worker-2"]

    again = tier2.stigmer("local", "start")
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: the local stack is already running (`stigmer local status`; `stigmer local stop` first)"
    )
    pids = [part["pid"] for part in tier2.state["parts"]]
    assert len(pids_alive(pids)) >= 4  # the refused start left the running stack as it was

    # An execution running when the stack stops gets the grace (2 s here), then is cancelled, not left RUNNING.
    tier2.model.streaming.clear()
    execution_id = tier2.home.run("agent", "execute", "slow", "think", "--detach").stdout.strip()
    assert tier2.model.streaming.wait(60)
    stopped = tier2.stigmer("local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert pids_alive(pids) == []
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
    assert str(raised.value) == "Tier 2 needs the Temporal SDK (temporalio): pip install 'stigmer-backend[fullstack]'"
