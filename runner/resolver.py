"""Resolving ``${.secrets.NAME}`` references at the last moment, in memory.

A runner keeps its agent's configuration with the references in place and
resolves them only when building the call that needs them (an HTTP header,
a tool's environment), so resolved values never sit in long-lived state.
The grammar is the contract's (``stigmer_backend.backends.rules.secret_refs``): a
reference may have blanks inside its braces, a malformed one is an error,
and any other ``${...}`` is literal text.

    headers = resolve({"Authorization": "Bearer ${.secrets.GH_TOKEN}"}, context.secrets)

An unknown reference is always an error (``UnresolvedReference``), never left
in place or replaced by an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from stigmer_backend.backends.rules import secret_refs

from .masking import SecretValue

__all__ = ["UnresolvedReference", "resolve"]

T = TypeVar("T")


class UnresolvedReference(ValueError):
    """A reference that cannot be resolved: it names no secret of the context, or is malformed.

    :ivar name: the secret name referenced ("" for a malformed reference).
    :ivar path: where in the structure, like ``headers.Authorization`` or ``args[2]``.
    """

    def __init__(self, message: str, *, name: str, path: str) -> None:
        super().__init__(message)
        self.name = name
        self.path = path


def resolve(data: T, secrets: Mapping[str, str | SecretValue]) -> T:
    """``data`` with every secret reference in its strings replaced by the secret's value.

    :param data: a string, or dicts, lists and tuples nesting strings (other
        values are kept as they are). Only values are resolved, never dict keys.
    :param secrets: the values by name, as ``GetExecutionContextResponse.secrets``
        gives them (plain or wrapped in ``SecretValue``).

    Returns a new structure; ``data`` is not changed. Raises
    ``UnresolvedReference`` naming the reference and where it is; the message
    never contains a value.
    """
    plain = {name: value.reveal() if isinstance(value, SecretValue) else value for name, value in secrets.items()}
    resolved: T = _resolve(data, plain, "")
    return resolved


def _resolve(data: Any, values: Mapping[str, str], path: str) -> Any:
    if isinstance(data, str):
        try:
            return secret_refs.substitute(data, values)
        except secret_refs.UnknownSecret as unknown:
            where = f" at {path}" if path else ""
            raise UnresolvedReference(
                f"${{.secrets.{unknown.name}}}{where} names a secret that this execution's context does not hold",
                name=unknown.name,
                path=path,
            ) from None
        except secret_refs.MalformedReference as malformed:
            where = f"{path}: " if path else ""
            raise UnresolvedReference(f"{where}{malformed}", name="", path=path) from None
    if isinstance(data, Mapping):
        return {key: _resolve(value, values, f"{path}.{key}" if path else str(key)) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(_resolve(item, values, f"{path}[{index}]") for index, item in enumerate(data))
    return data
