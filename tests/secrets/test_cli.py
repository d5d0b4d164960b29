"""``stigmer secret``: how values get in (never from argv), what comes out, and the errors."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.cli._context import Context, save_context
from stigmer_backend.cli.main import cli
from tests.builders import one_line_error

from .workload import file_source, values_of

STIGMER = Path(sys.executable).with_name("stigmer")


def stigmer(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def stored(home: Path, *names: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        async with SqliteBackend(home / "local.db", master_key=file_source(home)) as db:
            return await values_of(db, list(names))

    return asyncio.run(read())


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


@pytest.mark.parametrize(
    ("piped", "kept"),
    [
        ("plain", "plain"),
        ("with newline\n", "with newline"),
        ("windows line\r\n", "windows line"),
        ("two\nlines\n", "two\nlines"),
        ("only the last newline goes\n\n", "only the last newline goes\n"),
        ("  spaces kept  ", "  spaces kept  "),
    ],
)
def test_put_reads_the_value_from_stdin(home: Path, piped: str, kept: str) -> None:
    result = stigmer("secret", "put", "TOKEN", input=piped)
    assert result.exit_code == 0, result.output
    assert result.stderr == "secret TOKEN created (version 1)\n"
    assert result.stdout.splitlines()[0].split() == ["NAME", "VERSION", "CREATED", "UPDATED"]
    assert result.stdout.splitlines()[1].split()[:2] == ["TOKEN", "1"]
    assert stored(home, "TOKEN") == {"TOKEN": kept}


def test_put_never_takes_the_value_from_the_command_line(home: Path) -> None:
    assert "Got unexpected extra argument (hunter2)" in usage_error(
        stigmer("secret", "put", "TOKEN", "hunter2", input="x")
    )
    if (home / "local.db").exists():
        assert json.loads(stigmer("secret", "list", "-o", "json").stdout) == {"secrets": []}


@pytest.mark.parametrize(
    ("args", "piped", "message"),
    [
        (["put", "TOKEN"], "", "the value is empty"),
        (["put", "TOKEN"], "\n", "the value is empty"),
        (["put", "TOKEN"], b"\xff\xfe bad", "the value on stdin is not UTF-8 text"),
        (["put", "TOKEN"], "x" * 65_537, "the value is longer than 65536 bytes"),
        (["put", "9LIVES"], "x", "'9LIVES' is not a secret name"),
        (["put", "has-dash"], "x", "'has-dash' is not a secret name"),
        (["delete", "a.b"], None, "'a.b' is not a secret name"),
    ],
)
def test_bad_invocations_are_usage_errors(home: Path, args: list[str], piped, message: str) -> None:
    assert message in usage_error(stigmer("secret", *args, input=piped))


def test_list_and_delete(home: Path) -> None:
    assert stigmer("secret", "list").stdout.split() == ["NAME", "VERSION", "CREATED", "UPDATED"]
    for name in ("B_KEY", "A_KEY", "C_KEY"):
        stigmer("secret", "put", name, input="value-of-" + name)
    stigmer("secret", "put", "A_KEY", input="changed")
    table = stigmer("secret", "list").stdout.splitlines()
    assert [line.split()[:2] for line in table[1:]] == [["A_KEY", "2"], ["B_KEY", "1"], ["C_KEY", "1"]]
    as_yaml = stigmer("secret", "list", "-o", "yaml").stdout
    assert "name: A_KEY" in as_yaml and "value" not in as_yaml
    result = stigmer("secret", "delete", "B_KEY")
    assert (result.exit_code, result.stderr) == (0, "secret B_KEY deleted\n")
    names = [secret["name"] for secret in json.loads(stigmer("secret", "list", "-o", "json").stdout)["secrets"]]
    assert names == ["A_KEY", "C_KEY"]
    assert one_line_error(stigmer("secret", "delete", "B_KEY")) == "Error: NOT_FOUND: secret 'B_KEY' not found"


def test_status_before_any_key_and_after(home: Path) -> None:
    result = stigmer("secret", "status")
    assert result.exit_code == 0, result.output
    assert f"none yet: the first `stigmer secret put` creates one in {home / 'master.key'}" in result.stdout
    assert "- (no secrets stored)" in result.stdout
    assert not (home / "master.key").exists()
    stigmer("secret", "put", "A_KEY", input="v")
    status = json.loads(stigmer("secret", "status", "-o", "json").stdout)
    assert status["place"] == str(home / "master.key") and status["matches"] is True
    assert status["key_id"] == status["database_key_id"] and len(status["key_id"]) == 16
    table = stigmer("secret", "status").stdout
    assert f"{home / 'master.key'} (key id {status['key_id']})" in table and "yes" in table


def test_rotate_key_from_the_environment_needs_the_new_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .workload import random_key_text

    old, new = random_key_text(), random_key_text()
    monkeypatch.setenv("STIGMER_MASTER_KEY", old)
    stigmer("secret", "put", "A_KEY", input="value-a")
    assert "set STIGMER_NEW_MASTER_KEY to the new key" in one_line_error(stigmer("secret", "rotate-key"))
    monkeypatch.setenv("STIGMER_NEW_MASTER_KEY", "nonsense")
    assert "the STIGMER_NEW_MASTER_KEY environment variable is malformed" in usage_error(
        stigmer("secret", "rotate-key")
    )
    monkeypatch.setenv("STIGMER_NEW_MASTER_KEY", new)
    result = stigmer("secret", "rotate-key")
    assert result.exit_code == 0, result.output
    assert "now set STIGMER_MASTER_KEY to the value of STIGMER_NEW_MASTER_KEY" in result.stderr
    monkeypatch.setenv("STIGMER_MASTER_KEY", new)
    monkeypatch.delenv("STIGMER_NEW_MASTER_KEY")
    status = json.loads(stigmer("secret", "status", "-o", "json").stdout)
    assert status["matches"] is True and status["place"] == "the STIGMER_MASTER_KEY environment variable"


@pytest.mark.parametrize("command", ["status", "rotate-key"])
def test_key_commands_are_local_only(home: Path, command: str) -> None:
    save_context(Context(endpoint="backend.example.com:443"))
    assert one_line_error(stigmer("secret", command)) == (
        f"Error: `stigmer secret {command}` works on the local database only; the active context is "
        "backend.example.com:443 (see `stigmer context`)"
    )


def test_put_prompts_without_echo_in_a_terminal(home: Path) -> None:
    """A real pseudo-terminal: hidden prompt, confirmation, and a retry when they differ."""
    import pty

    value = "typed-in-secret-51f0"
    controller, terminal = pty.openpty()
    # The `home` fixture set STIGMER_HOME and removed any key and session bus from os.environ.
    command = [str(STIGMER), "secret", "put", "TYPED"]
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    screen, seen = b"", 0

    def expect(text: bytes) -> None:
        """Waits for ``text`` to appear after what was already expected."""
        nonlocal screen, seen
        deadline = time.monotonic() + 30
        while text not in screen[seen:]:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} on the terminal; it shows {screen!r}"
            if select.select([controller], [], [], remaining)[0]:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the terminal closed before {text!r}; it shows {screen!r}"
                screen += chunk
        seen = screen.index(text, seen) + len(text)

    try:
        expect(b"Value: ")
        os.write(controller, b"first try\n")
        expect(b"Repeat for confirmation: ")
        os.write(controller, b"does not match\n")
        expect(b"Error: The two entered values do not match.")
        expect(b"Value: ")
        os.write(controller, value.encode() + b"\n")
        expect(b"Repeat for confirmation: ")
        os.write(controller, value.encode() + b"\n")
        expect(b"secret TYPED created (version 1)")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert value.encode() not in screen and b"first try" not in screen
    assert stored(home, "TYPED") == {"TYPED": value}
