"""Rendering results: ``-o table`` (default), ``json`` or ``yaml``.

JSON and YAML are the message's canonical proto JSON mapping, so scripts see
exactly the contract's field names. Data goes to stdout; status to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["OUTPUT_FORMATS", "emit", "output_option", "status"]

OUTPUT_FORMATS = ("table", "json", "yaml")


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
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
    click.echo(text, err=True)


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
        click.echo(json.dumps(_plain(data), indent=2, ensure_ascii=False))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True).rstrip())
    else:
        table = [[header for header, _ in columns]]
        table += [[_cell(cell(row)) for _, cell in columns] for row in (rows if rows is not None else [data])]
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        for line in table:
            click.echo("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())


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
