"""The storage backends by kind: the one line a new storage backend adds.

Every caller that opens storage by a name or a URL reads this table: the
CLI's context (``{"kind": ..., "url": ...}``), ``stigmer server --backend URL``
and the conformance suite's ``--stigmer-target URL``. So a new storage backend
is its own folder under ``backends/`` plus one line in ``STORAGE_BACKENDS``.

Adapters are named as strings and imported only when opened: this module
imports no adapter, and a command that never opens PostgreSQL never loads
psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from grpclib import GRPCError
from grpclib.const import Status

if TYPE_CHECKING:
    from .base import Backend

__all__ = ["STORAGE_BACKENDS", "open_storage", "require_kind", "storage_kind"]

STORAGE_BACKENDS: dict[str, str] = {
    "sqlite": "stigmer_backend.backends.sqlite:SqliteBackend",
    "postgresql": "stigmer_backend.backends.postgres:PostgresBackend",
}
"""Kind (also the URL scheme that selects it) -> ``module:Class``.

The class is called as ``Class(url, **options)``, or ``Class(**options)`` for
the kind's default place, and opened with ``async with``. It accepts
``master_key=`` (a ``MasterKeySource``) if it stores secrets.
"""

_SCHEME_ALIASES = {"postgres": "postgresql"}
"""Other spellings of a kind's URL scheme: libpq reads ``postgres://`` as ``postgresql://``."""


def storage_kind(url: str) -> str:
    """The kind a storage URL names: its scheme (``postgresql://...``); a plain file path is SQLite."""
    scheme, separator, _ = url.partition("://")
    if not separator:
        return "sqlite"
    scheme = scheme.lower()
    return _SCHEME_ALIASES.get(scheme, scheme)


def require_kind(kind: str, *also_known: str) -> str:
    """The ``module:Class`` registered for ``kind``, or ``GRPCError(FAILED_PRECONDITION)`` naming the known kinds.

    :param also_known: kinds the caller handles itself (the CLI's ``cloud``), listed in the error too.
    """
    target = STORAGE_BACKENDS.get(kind)
    if target is None:
        known = ", ".join(sorted({*STORAGE_BACKENDS, *also_known}))
        raise GRPCError(Status.FAILED_PRECONDITION, f"unknown backend kind {kind!r} (known: {known})")
    return target


def open_storage(kind: str, url: str | None = None, **options: object) -> Backend:
    """A storage backend of ``kind`` at ``url`` (``None``: the kind's default place), not yet entered.

    :param options: passed on to the kind's class (``pool_size=`` for a database server,
        ``master_key=``, ...).

    An unregistered kind, or one whose optional packages are not installed,
    is ``GRPCError(FAILED_PRECONDITION)``, which the CLI reports in one line.
    """
    module, _, name = require_kind(kind).partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except ImportError as error:  # an adapter's own message names the extra to install
        raise GRPCError(Status.FAILED_PRECONDITION, f"cannot load the {kind} backend ({error})") from None
    backend: Backend = factory(url, **options) if url else factory(**options)
    return backend
