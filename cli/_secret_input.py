"""How a secret's value reaches the CLI: stdin, a hidden prompt, an environment variable, never by accident argv.

``stigmer secret put`` and ``stigmer apply --secret`` share these, so a value
is read, trimmed and limited the same way by both.
"""

from __future__ import annotations

import os
import sys

import click

__all__ = ["ARGV_WARNING", "check_secret_name", "read_value", "value_for"]

ARGV_WARNING = (
    "warning: a value given as --secret NAME=VALUE may be kept in your shell history and is visible to other "
    "users in the process list; --secret NAME reads it from $NAME, a hidden prompt or stdin instead"
)


def check_secret_name(value: str, param_hint: str | None = None) -> str:
    """``value`` if it is a valid secret name, else a ``BadParameter`` saying what one is."""
    from stigmer_backend.backends.rules.secret_refs import MAX_SECRET_NAME_CHARS, SECRET_NAME

    if not SECRET_NAME.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not a secret name: letters, digits and underscores, not starting with a digit, "
            f"at most {MAX_SECRET_NAME_CHARS} characters",
            param_hint=param_hint,
        )
    return value


def read_value(prompt: str = "Value") -> str:
    """The value: all of stdin when it is not a terminal, else a hidden prompt asked twice."""
    stdin = getattr(sys.stdin, "buffer", None)
    if stdin is None:
        raise click.UsageError("there is no standard input to read the value from")
    if stdin.isatty():
        value = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    else:
        from stigmer_backend.backends.rules.validation import MAX_SECRET_VALUE_BYTES

        data = stdin.read(MAX_SECRET_VALUE_BYTES + 3)  # room for a newline; larger is refused below anyway
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise click.UsageError("the value on stdin is not UTF-8 text") from None
        # `echo value | stigmer secret put NAME` must store "value", as $(...) would.
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
    return checked(value, "the value is empty: pipe it on stdin, or run in a terminal to be prompted for it")


def checked(value: str, empty: str) -> str:
    from stigmer_backend.backends.rules.validation import MAX_SECRET_VALUE_BYTES

    if not value:
        raise click.UsageError(empty)
    if len(value.encode()) > MAX_SECRET_VALUE_BYTES:
        raise click.UsageError(f"the value is longer than {MAX_SECRET_VALUE_BYTES} bytes")
    return value


def value_for(name: str, stdin_free: bool) -> str:
    """A bare ``--secret NAME``: ``$NAME`` if set, else a hidden prompt on a terminal, else stdin.

    :param stdin_free: whether stdin may still be read (not already the manifest or another secret's value).
    """
    if name in os.environ:
        return checked(os.environ[name], f"--secret {name}: the environment variable {name} is empty")
    stdin = getattr(sys.stdin, "buffer", None)
    if stdin is not None and not stdin.isatty() and not stdin_free:
        raise click.ClickException(
            f"--secret {name}: ${name} is not set and stdin is already used; set {name} or give --secret {name}=VALUE"
        )
    return read_value(f"Value of {name}")
