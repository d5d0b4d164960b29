"""The README's command lines, run as a person would type them on a fresh clone.

Each ``sh`` block marked ``<!-- readme-test ... -->`` is fed, line by line, to
one ``bash`` (so ``export``, ``ID=$(...)``, ``&`` and ``kill %1`` work as in a
terminal), from a directory holding the clone's ``examples/``, with a fresh
``STIGMER_HOME``, no OS keychain and ``stigmer`` on PATH. Like the person at
the terminal, the test waits for a background command's ready line
(``listening on``, ``started``) before typing the next one. The only change to
the text is the port: 7780 becomes a free one, as the machine may be shared.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO, toolchain_env
from tests.remote_fixtures import isolated_env

README = REPO / "README.md"
MARK = "<!-- readme-test"
READY = re.compile(r"listening on|runner \S+ started")
UNTESTED_HERE = {
    "Clients in Go and TypeScript": "tests/clients/ builds and runs both against a real server",
    "Many replicas on PostgreSQL": "a template for the operator's database host; tests/postgres/ runs "
    "`stigmer server --backend postgresql://` replicas and the suite against a real PostgreSQL",
    "Tier 2: executions as Temporal workflows (`stigmer local`)": "a synopsis with options in brackets; "
    "tests/fullstack/ runs `stigmer local start | status | logs | stop` and executions on a real Temporal server",
}


def blocks() -> list[tuple[str, list[str]]]:
    """(heading, lines) of every marked ``sh`` block, in README order."""
    found, heading, marked, current = [], "", False, None
    for line in README.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:]
        if current is not None:
            if line.startswith("```"):
                found.append((heading, current, marked))
                current, marked = None, False
            else:
                current.append(line)
        elif line.startswith("```sh"):
            current = []
        elif line.startswith(MARK):
            marked = True
    return found


def test_every_block_of_stigmer_commands_is_run_here_or_elsewhere():
    unrun = [
        heading
        for heading, lines, marked in blocks()
        if not marked and any(line.startswith("stigmer ") for line in lines) and heading not in UNTESTED_HERE
    ]
    assert unrun == [], f"README blocks with stigmer commands that no test runs: {unrun}"
    assert sum(marked for _, _, marked in blocks()) >= 3


class Terminal:
    """One bash, typed into line by line; its output (stdout and stderr) read as it comes."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=cwd, env=env, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def _until(self, pattern: re.Pattern[str], timeout: float) -> list[str]:
        seen = []
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, "bash ended early:\n" + "\n".join(seen)
            seen.append(line)
            if pattern.search(line):
                return seen

    def run(self, command: str, timeout: float = 600) -> tuple[int, list[str]]:
        """Types ``command`` (its stdin is not the script), returns its exit code and output."""
        self._type(f'{{ {command}\n}} </dev/null; echo "__DONE__ $?"')
        seen = self._until(re.compile(r"^__DONE__ \d+$"), timeout)
        return int(seen[-1].split()[1]), seen[:-1]

    def start(self, command: str, timeout: float = 120) -> list[str]:
        """Types ``command &`` and waits for its ready line."""
        self._type(f"{{ {command} & }} </dev/null")
        return self._until(READY, timeout)

    def close(self) -> None:
        with_jobs = self.run("wait", timeout=120)
        assert with_jobs[0] == 0
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("heading", "lines"),
    [pytest.param(heading, lines, id=heading) for heading, lines, marked in blocks() if marked],
)
def test_the_readme_block_runs_as_shown(tmp_path, heading, lines):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "examples").symlink_to(REPO / "examples")
    env = {**toolchain_env(), **isolated_env(home)}
    env["PATH"] = toolchain_env()["PATH"]
    port = str(_free_port())
    terminal = Terminal(clone, env)
    outputs: dict[str, list[str]] = {}
    try:
        for raw in lines:
            command = re.sub(r"\s+#.*$", "", raw).strip().replace("7780", port)
            if not command or command.startswith("#"):
                continue
            if command.endswith("&"):
                outputs[command] = terminal.start(command.removesuffix("&").strip())
                continue
            code, output = terminal.run(command)
            outputs[command] = output
            shown = "\n".join(output)
            assert code == 0, f"`{command}` exited {code}:\n{shown}"
            assert "Traceback" not in shown, shown
            if "_STIGMER_COMPLETE=bash_source" in command:  # the completion is registered, and completes
                code, registered = terminal.run("complete -p stigmer")
                assert code == 0 and "stigmer" in registered[-1], registered
        terminal.close()
    finally:
        if terminal.process.poll() is None:
            os.killpg(terminal.process.pid, 9)
            terminal.process.wait()
    everything = "\n".join(line for output in outputs.values() for line in output)
    if 'stigmer agent execute echo-bot "Hello"' in outputs:
        assert "Hello" in outputs['stigmer agent execute echo-bot "Hello"']
        assert "SUCCEEDED" in "\n".join(outputs['stigmer execution watch "$ID"'])
        assert "secret GREETING_TOKEN created" in everything
    if heading.startswith("Serving"):
        assert any(line.endswith("— CONFORMANT") for line in everything.splitlines()), everything[-3000:]
        assert f"logged in to 127.0.0.1:{port}" in everything
