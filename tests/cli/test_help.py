"""Every command has help; ``stigmer --help`` stays light."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from stigmer_backend.backends.registry import STORAGE_BACKENDS
from stigmer_backend.cli.main import COMMANDS, cli

HEAVY = (
    "grpclib",
    "sqlite_utils",
    "sqlite3",
    "cryptography",
    "keyring",
    "stigmer_backend.gen",
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


def _modules_loaded_by(arguments: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The modules in ``sys.modules`` after ``stigmer *arguments`` ran in a fresh interpreter."""
    code = (
        "import sys\nfrom stigmer_backend.cli.main import cli\n"
        f"cli.main({arguments!r}, prog_name='stigmer', standalone_mode=False)\n"
        "print('\\n'.join(['-- sys.modules --', *sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return set(result.stdout.split("-- sys.modules --\n")[-1].splitlines())  # after what the command printed


def _among(loaded: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in loaded))


def test_top_level_help_imports_nothing_heavy():
    # asyncio (with ssl, socket, subprocess) alone was a third of `stigmer --help`'s start-up.
    loaded = _modules_loaded_by(["--help"])
    assert _among(loaded, (*HEAVY, "asyncio", "ssl")) == [], "stigmer --help imported them"


def test_a_local_list_loads_only_the_local_backend(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    _modules_loaded_by(["execution", "list"], env)  # the first use creates the database (sqlite_utils migrates it)
    loaded = _modules_loaded_by(["execution", "list"], env)
    assert "stigmer_backend.backends.sqlite" in loaded  # it did list, from the local SQLite file
    remote_or_server = (
        "stigmer_backend.backends.cloud",
        "stigmer_backend.backends.codec",
        # every other registered storage backend (postgres, ...): loaded only when a context names it
        *(target.partition(":")[0] for kind, target in STORAGE_BACKENDS.items() if kind != "sqlite"),
        "stigmer_backend.server",
        "stigmer_backend.runner",
        "grpclib.client",
        "cryptography",
        "keyring",
        "yaml",
        "stigmer_backend.fullstack",
        "temporalio",
        "httpx",
        "stigmer_backend.backends.encryption",
        "stigmer_backend.cli._manifests",
        "google.protobuf.json_format",
        # betterproto2 reads its version with it unless the CLI hands it over (cli/_betterproto2_version.py)
        "importlib.metadata",
    )
    assert _among(loaded, remote_or_server) == [], "stigmer execution list (local) imported them"
    # Beyond the standard library: click, ours, and what the generated module imports when it loads
    # (betterproto2 and its grpclib service base with h2, protobuf descriptors, dateutil). That remainder
    # is most of the command's start-up (benchmarks/run --only cli: "list start-up by import").
    generated_code_needs = {"betterproto2", "grpclib", "h2", "hpack", "hyperframe", "multidict", "google", "dateutil"}
    third_party = {name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names)
    unexpected = {name for name in third_party if not name.startswith("_")} - {
        "click",
        "stigmer_backend",
        "typing_extensions",
        *generated_code_needs,
    }
    assert sorted(unexpected) == [], "stigmer execution list (local) imported more than the generated code needs"
    other_commands = {f"stigmer_backend.cli.{target.split(':')[0]}" for target in COMMANDS.values()} - {
        "stigmer_backend.cli.executions"
    }
    assert sorted(other_commands & loaded) == [], "stigmer execution list imported other commands' modules"


def test_the_console_script_runs():
    from pathlib import Path

    result = subprocess.run([str(Path(sys.executable).parent / "stigmer"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("stigmer, version ")


def test_an_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.output
