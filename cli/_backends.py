"""The backend a CLI context opens: one registration per kind.

Storage backends are registered by the class that implements them; the class
is called with the context's ``url`` (``None`` for its default place), so a
new storage backend is its own folder under ``backends/`` plus one line in
``STORAGE_BACKENDS``. The remote kind is built from the saved login (endpoint,
CA file, token), which is the CLI's state: the adapter never reads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypedDict, Unpack

from grpclib import GRPCError
from grpclib.const import Status

from ._context import REMOTE, Context

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.backends.cloud import CloudBackend, RetryPolicy

    class CloudOptions(TypedDict, total=False):
        """What ``from_saved_login`` passes on to ``CloudBackend``."""

        timeout: float | None
        watch_timeout: float | None
        retry: RetryPolicy | None


__all__ = ["STORAGE_BACKENDS", "backend_for", "open_storage", "storage_kind"]

STORAGE_BACKENDS: dict[str, str] = {
    "sqlite": "stigmer_backend.backends.sqlite:SqliteBackend",
    "postgresql": "stigmer_backend.backends.postgres:PostgresBackend",
}
"""Kind (also the URL scheme that selects it) -> ``module:Class``, called as ``Class(url)`` or ``Class()``."""


_SCHEME_ALIASES = {"postgres": "postgresql"}  # libpq takes both spellings of its URI scheme


def storage_kind(url: str) -> str:
    """The kind a storage URL names: its scheme (``postgresql://...``); a plain file path is SQLite."""
    scheme, separator, _ = url.partition("://")
    if not separator:
        return "sqlite"
    return _SCHEME_ALIASES.get(scheme.lower(), scheme.lower())


def open_storage(kind: str, url: str | None = None, **options: object) -> Backend:
    """A storage backend of ``kind`` at ``url`` (``None``: the kind's default place).

    :param options: passed on to the kind's class (``pool_size=`` for a database server, ...).

    An unregistered kind, or one whose optional packages are not installed,
    is ``GRPCError(FAILED_PRECONDITION)``, reported by the CLI in one line.
    """
    target = STORAGE_BACKENDS.get(kind)
    if target is None:
        known = ", ".join(sorted([*STORAGE_BACKENDS, REMOTE]))
        raise GRPCError(Status.FAILED_PRECONDITION, f"unknown backend kind {kind!r} (known: {known})")
    module, _, name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except ImportError as error:  # an adapter's own message names the extra to install
        raise GRPCError(Status.FAILED_PRECONDITION, f"cannot load the {kind} backend ({error})") from None
    backend: Backend = factory(url, **options) if url else factory(**options)
    return backend


def backend_for(context: Context) -> Backend:
    """The backend ``context`` names."""
    if context.kind == REMOTE:
        return from_saved_login(context)
    return open_storage(context.kind, context.url or None)


def from_saved_login(context: Context, **options: Unpack[CloudOptions]) -> CloudBackend:
    """The backend ``stigmer login`` saved: the context's endpoint and CA, with its stored token.

    :param options: passed on to ``CloudBackend`` (``timeout``, ``retry``, ...).

    A saved login that cannot be used (a hand-edited endpoint, say) is
    ``GRPCError(FAILED_PRECONDITION)``, so the CLI reports it in one line.
    """
    from stigmer_backend.backends.cloud import CloudBackend
    from stigmer_backend.backends.cloud.credentials import load_token

    try:
        return CloudBackend(
            context.endpoint,
            token=load_token(context.endpoint),
            tls=not context.plaintext,
            ca_file=context.ca_file or None,
            **options,
        )
    except ValueError as error:
        raise GRPCError(
            Status.FAILED_PRECONDITION, f"the saved login is unusable ({error}); run `stigmer login` again"
        ) from None
