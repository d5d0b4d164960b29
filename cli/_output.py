"""Rendering results: ``-o table`` (default), ``json`` or ``yaml``.

JSON and YAML are the message's canonical proto JSON mapping, so scripts see
exactly the contract's field names. Data goes to stdout; status to stderr.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

__all__ = ["OUTPUT_FORMATS", "TIME_FORMAT", "emit", "for_terminal", "output_option", "status", "users_enums", "when"]

OUTPUT_FORMATS = ("table", "json", "yaml")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
"""How every table and description shows a moment (JSON and YAML keep the proto's RFC 3339)."""

# What a terminal acts on instead of showing: C0 controls but tab and newline (ESC starts escape
# sequences, BEL rings, CR rewrites the line), DEL, C1 controls, and the bidirectional overrides and
# isolates that reorder what is shown (RLO makes "exe.txt" read "txt.exe").
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def for_terminal(text: str, *, err: bool = False) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\u202e``) when printed to a terminal.

    Stored text and model output come from others: on a TTY they must not move the cursor, retitle
    the window or reverse what is shown. Piped output is left exact, for scripts.
    """
    stream = sys.stderr if err else sys.stdout
    if not text or not stream.isatty():
        return text
    return _TERMINAL_CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def when(moment: datetime | None) -> str | None:
    """``moment`` in ``TIME_FORMAT`` (in UTC), or None when unset."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment is not None else None


def users_enums(text: str) -> str:
    """``text`` with the contract's enum values as people write them: ``SUCCEEDED``, not ``EXECUTION_PHASE_SUCCEEDED``.

    For tables and error lines; JSON and YAML keep the canonical names. The prefixes come from the
    generated enums (``ExecutionPhase`` -> ``EXECUTION_PHASE_``), so a new enum needs nothing here.
    """
    return _enum_prefixes().sub("", text)


@functools.cache
def _enum_prefixes() -> re.Pattern[str]:
    import enum

    from stigmer_backend.gen.stigmer.backend import v1 as pb

    names = [name for name, value in vars(pb).items() if isinstance(value, type) and issubclass(value, enum.Enum)]
    prefixes = sorted(re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() for name in names)
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{'|'.join(prefixes)})_(?=[A-Z])")


Command = TypeVar("Command", bound=Callable[..., Any])


def output_option(command: Command) -> Command:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default="table",
        show_default=True,
        help="How to print the result.",
    )(command)


def status(text: str) -> None:
    """A status line for people, on stderr so that stdout stays data."""
    click.echo(for_terminal(text, err=True), err=True)


def emit(
    output: str,
    data: Any,
    columns: Sequence[tuple[str, Callable[[Any], object]]],
    rows: Sequence[Any] | None = None,
) -> None:
    """Prints ``data`` (a message, or a dict of messages) as ``output`` asks.

    For tables, ``rows`` (default ``[data]``) are rendered with ``columns``:
    pairs of header and cell function.
    """
    if output == "json":
        click.echo(for_terminal(json.dumps(_plain(data), indent=2, ensure_ascii=False)))
    elif output == "yaml":
        import yaml

        click.echo(for_terminal(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True).rstrip()))
    else:
        table = [[header for header, _ in columns]]
        table += [[_cell(cell(row)) for _, cell in columns] for row in (rows if rows is not None else [data])]
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        for line in table:
            text = "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
            click.echo(for_terminal(users_enums(text)))


def _plain(data: Any) -> Any:
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_plain(value) for value in data]
    return data


def _cell(value: object) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"
