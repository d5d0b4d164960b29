"""The ``stigmer`` command group.

Subcommands live in their own modules and are imported only when invoked
(click's lazy loading), so ``stigmer --help`` stays fast and imports none of
grpclib, sqlite-utils, cryptography, keyring or the generated code.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

__all__ = ["cli", "main"]

# name -> "module:attribute", relative to this package
COMMANDS: dict[str, str] = {
    "apply": "apply:apply",
    "diff": "apply:diff",
    "agent": "agents:agent",
    "execution": "executions:execution",
    "secret": "secrets:secret",
    "login": "auth:login",
    "logout": "auth:logout",
    "context": "auth:context",
    "server": "server:server",
    "runner": "runner:runner",
    "local": "local:local",
    "conformance": "conformance:conformance",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attribute = COMMANDS[name].split(":")
            command: click.Command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            return command
        return super().get_command(ctx, name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests only among commands it has loaded; these load lazily, so suggest from the names.
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stigmer-backend", prog_name="stigmer")
def cli() -> None:
    """Stigmer: run AI agents locally (SQLite) or against a remote backend (gRPC)."""
    from . import _betterproto2_version

    _betterproto2_version.install()  # runs before the command, whose body imports the generated code


def main() -> None:
    """The ``stigmer`` script: ``cli``, ended without interpreter teardown once Temporal's native client has run.

    The Temporal SDK's Rust threads outlive the event loop; when CPython finalizes under them the
    process aborts (SIGABRT, "PyGILState_Release", temporalio/sdk-python#300) after the command's
    work is done, in about 1 of 20 Tier 2 commands on a loaded machine. Leaving by ``os._exit``
    after flushing skips that teardown; every command's own cleanup (``finally``, ``async with``)
    has already run by then.
    """
    try:
        cli(prog_name="stigmer")
    except SystemExit as end:
        if "temporalio.bridge.temporal_sdk_bridge" not in sys.modules:
            raise
        code = end.code
        if not isinstance(code, int):
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be shown
                pass
        os._exit(code)
