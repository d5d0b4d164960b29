"""Every command has help; ``stigmer --help`` stays light."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from stigmer.cli.main import COMMANDS, cli

HEAVY = (
    "grpclib",
    "sqlite_utils",
    "sqlite3",
    "cryptography",
    "keyring",
    "stigmer.gen",
    "google.protobuf",
    "yaml",
    "hypothesis",
)


def _all_commands():
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        yield [name], command
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield [name, sub], command.get_command(ctx, sub)


@pytest.mark.parametrize(
    ("path", "command"), list(_all_commands()), ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_every_command_has_help(path, command):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help and command.help.strip(), f"stigmer {' '.join(path)} has no help text"
    assert "Usage: " in result.output


def test_every_registered_command_resolves():
    ctx = click.Context(cli)
    assert {name for name in COMMANDS if cli.get_command(ctx, name) is not None} == set(COMMANDS)


def test_top_level_help_imports_nothing_heavy():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom stigmer.cli.main import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"stigmer --help imported {loaded}"


def test_the_console_script_runs():
    from pathlib import Path

    result = subprocess.run([str(Path(sys.executable).parent / "stigmer"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("stigmer, version ")


def test_an_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.output
