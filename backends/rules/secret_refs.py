"""Secret references, ``${.secrets.NAME}``, as the proto defines them.

A reference may have spaces or tabs inside its braces (``${ .secrets.NAME }``).
Text that starts like one (``${``, optional blanks, ``.secrets.``) but does not
complete one is malformed; every other ``${...}`` form is literal text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "MAX_SECRET_NAME_CHARS",
    "SECRET_NAME",
    "MalformedReference",
    "UnknownSecret",
    "find",
    "is_single_reference",
    "substitute",
]

MAX_SECRET_NAME_CHARS = 128
_NAME = rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_SECRET_NAME_CHARS - 1}}}"
SECRET_NAME = re.compile(_NAME)
_REFERENCE = re.compile(rf"\$\{{[ \t]*\.secrets\.(?P<name>{_NAME})[ \t]*\}}")
_OPENING = re.compile(r"\$\{[ \t]*\.secrets\.")


class MalformedReference(ValueError):
    """Text starts a secret reference that it does not complete."""


class UnknownSecret(KeyError):
    """A reference names a secret that has no value; ``name`` says which."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"secret {self.name!r} does not exist"


def find(text: str) -> list[str]:
    """Names referenced by ``text``, in order of first appearance.

    Raises ``MalformedReference`` at the first incomplete reference.
    """
    names: list[str] = []
    complete = {m.start(): m for m in _REFERENCE.finditer(text)}
    for opening in _OPENING.finditer(text):
        match = complete.get(opening.start())
        if match is None:
            snippet = text[opening.start() : opening.start() + 40]
            raise MalformedReference(f"malformed secret reference at {snippet!r}; expected ${{.secrets.NAME}}")
        if match["name"] not in names:
            names.append(match["name"])
    return names


def is_single_reference(text: str) -> bool:
    """Whether ``text`` is exactly one reference with nothing around it."""
    return _REFERENCE.fullmatch(text) is not None


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every reference replaced by its secret's value.

    Raises ``UnknownSecret`` for a name missing from ``values``; a reference is
    never left in place or replaced by an empty string.
    """
    find(text)  # malformed references are errors here too

    def value(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in values:
            raise UnknownSecret(name)
        return values[name]

    return _REFERENCE.sub(value, text)
