"""Tier 2 over PostgreSQL: the stack's `stigmer server` serves the storage the CLI's context names."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

from tests.postgres.conftest import cluster  # noqa: F401  (the session's real PostgreSQL server)
from tests.runner.conftest import STIGMER, Home
from tests.runner.fake_model import start_fake_model, stop_fake_model

from .conftest import pids_alive


def test_the_stack_serves_a_postgresql_context_and_runs_its_executions_as_workflows(cluster, tmp_path):  # noqa: F811
    database = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    home = Home(path)
    (path / "config.json").write_text(json.dumps({"kind": "postgresql", "url": database}))
    model = start_fake_model()
    try:
        home.agent("bot", "stream", model.endpoint)

        def stigmer(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([STIGMER, *args], env=home.env, capture_output=True, text=True, timeout=180)

        started = stigmer("local", "start", "--workers", "1")
        assert started.returncode == 0, started.stderr
        assert f"(stigmer server, {database})" in started.stdout
        pids = [part["pid"] for part in json.loads((path / "local" / "stack.json").read_text())["parts"]]
        try:
            done = stigmer("agent", "execute", "bot", "hello")
            assert done.returncode == 0, done.stderr
            assert done.stdout == "Hello, world\n"
            execution_id = re.search(r"(exe_\w+): running as a Temporal workflow", done.stderr).group(1)
            shown = json.loads(home.run("execution", "get", execution_id, "-o", "json").stdout)  # read from PostgreSQL
            assert shown["status"]["phase"] == "EXECUTION_PHASE_SUCCEEDED"
            assert shown["status"]["runnerId"].startswith("local-worker-1-")
            assert not (path / "local.db").exists()  # nothing went to the default SQLite file
        finally:
            stopped = stigmer("local", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert pids_alive(pids) == []
    finally:
        stop_fake_model(model)
