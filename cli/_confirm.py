"""Asking before a command destroys something: on a terminal only, and never with ``--yes``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

__all__ = ["confirm", "yes_option"]


def yes_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")(command)


def confirm(question: str, yes: bool) -> None:
    """Asks ``question`` when a person is at the terminal; anything but yes aborts (exit 1) and changes nothing.

    Piped or redirected stdin is a script: it is not asked, as ``rm`` does not ask without a terminal.
    """
    if yes or not sys.stdin.isatty():
        return
    click.confirm(question, abort=True)
