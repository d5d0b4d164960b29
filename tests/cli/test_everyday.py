"""Everyday CLI manners: typos, confirmations, one time format, enums as written, completion, login's message."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import one_line_error

STIGMER = str(Path(sys.executable).with_name("stigmer"))
ECHO = "name: echo-bot\nspec:\n  model: {provider: echo, model: echo-1}\n"
MOMENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@pytest.fixture
def echo(stigmer, tmp_path):
    path = tmp_path / "echo.yaml"
    path.write_text(ECHO)
    assert stigmer("apply", "-f", str(path), "--secret", "API_KEY=k").exit_code == 0
    return stigmer


@pytest.mark.parametrize(("typed", "meant"), [("agnt", "agent"), ("secrt", "secret"), ("aply", "apply")])
def test_a_top_level_typo_gets_a_suggestion(stigmer, typed, meant):
    result = stigmer(typed)
    assert result.exit_code == 2
    assert f"Error: No such command '{typed}'. Did you mean '{meant}'?" in result.stderr


def test_login_without_an_endpoint_says_what_it_needs(stigmer):
    result = stigmer("login", input="")
    assert result.exit_code == 2
    assert "login needs the backend's address: --endpoint HOST:PORT" in result.stderr
    assert "--plaintext" in result.stderr


def _on_a_terminal(stigmer, args: list[str], answer: bytes) -> tuple[int, bytes]:
    """Runs ``stigmer ARGS`` on a pseudo-terminal, answering its question with ``answer``."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [STIGMER, *args], stdin=terminal, stdout=terminal, stderr=terminal, env={**os.environ, **stigmer.env}
    )
    os.close(terminal)
    seen = b""
    while b"[y/N]" not in seen:
        chunk = os.read(controller, 1024)
        assert chunk, seen
        seen += chunk
    os.write(controller, answer)
    code = process.wait(timeout=60)
    with __import__("contextlib").suppress(OSError):
        seen += os.read(controller, 4096)
    os.close(controller)
    return code, seen


@pytest.mark.parametrize(
    ("args", "listing", "name"),
    [
        (["agent", "delete", "echo-bot"], ["agent", "list"], "echo-bot"),
        (["secret", "delete", "API_KEY"], ["secret", "list"], "API_KEY"),
    ],
    ids=["agent", "secret"],
)
def test_delete_asks_on_a_terminal_unless_yes(echo, args, listing, name):
    code, shown = _on_a_terminal(echo, args, b"n\n")
    assert code == 1 and b"Aborted" in shown
    assert name in echo(*listing).stdout, "a no deleted it anyway"
    code, shown = _on_a_terminal(echo, args, b"y\n")
    assert code == 0 and b"deleted" in shown
    assert name not in echo(*listing).stdout


def test_delete_does_not_ask_with_yes_or_without_a_terminal(echo):
    assert echo("agent", "delete", "echo-bot", "--yes").exit_code == 0
    assert echo("secret", "delete", "API_KEY", input="").exit_code == 0  # piped stdin: a script, not asked


def test_every_table_shows_moments_one_way(echo):
    execution_id = echo("agent", "execute", "echo-bot", "hi", "--detach").stdout.strip()
    shown = {
        "agent list": echo("agent", "list").stdout,
        "secret list": echo("secret", "list").stdout,
        "execution list": echo("execution", "list").stdout,
        "execution get": echo("execution", "get", execution_id).stdout,
    }
    for command, text in shown.items():
        assert MOMENT.search(text), f"{command} shows no moment as YYYY-MM-DD HH:MM:SS UTC:\n{text}"
        assert not re.search(r"\d\dT\d\d:|\+00:00", text), f"{command} shows another time format:\n{text}"


def test_phases_read_as_written_in_tables_and_errors_but_canonical_in_json(echo):
    execution_id = echo("agent", "execute", "echo-bot", "hi", "--detach").stdout.strip()
    assert echo("execution", "cancel", execution_id).exit_code == 0
    listed = echo("execution", "list").stdout
    assert " CANCELLED " in listed and "EXECUTION_PHASE" not in listed
    error = one_line_error(echo("execution", "cancel", execution_id))
    assert "is CANCELLED, a terminal phase" in error and "EXECUTION_PHASE" not in error
    assert '"phase": "EXECUTION_PHASE_CANCELLED"' in echo("execution", "get", execution_id, "-o", "json").stdout


def _complete(stigmer, words: str) -> list[str]:
    env = {**os.environ, **stigmer.env, "_STIGMER_COMPLETE": "bash_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split(" ")) - 1)
    result = subprocess.run([STIGMER], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_offers_agent_names_execution_ids_and_secret_names(echo, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(ECHO.replace("echo-bot", "helper"))
    echo("apply", "-f", str(other))
    execution_id = echo("agent", "execute", "echo-bot", "hi", "--detach").stdout.strip()
    assert _complete(echo, "stigmer agent get ") == ["echo-bot", "helper"]
    assert _complete(echo, "stigmer agent execute h") == ["helper"]
    assert _complete(echo, "stigmer execution watch exe_") == [execution_id]
    assert _complete(echo, "stigmer secret delete A") == ["API_KEY"]
    assert _complete(echo, "stigmer ag") == ["agent"]


def test_completion_offers_nothing_quietly_when_the_backend_cannot_answer(stigmer):
    stigmer.env["STIGMER_HOME"] = "/nonexistent/stigmer-home"
    assert _complete(stigmer, "stigmer agent get ") == []
