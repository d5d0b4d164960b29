"""sqlite3 errors to the status codes the proto documents, at one boundary.

Most specific first: a full disk is ``RESOURCE_EXHAUSTED`` (nothing was
written), a lock still held after the busy timeout is ``UNAVAILABLE``
(transient), everything that means the file cannot be used as our database
(not a database, corrupt, read-only, unopenable, I/O error) is ``INTERNAL``
with the path, so the user knows which file to look at.
"""

from __future__ import annotations

import sqlite3

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["storage_error"]

_RULES: list[tuple[tuple[str, ...], Status, str]] = [
    (("SQLITE_FULL",), Status.RESOURCE_EXHAUSTED, "the disk holding {path} is full; nothing was written"),
    (("SQLITE_BUSY", "SQLITE_LOCKED"), Status.UNAVAILABLE, "{path} stayed locked by another writer; try again"),
    (("SQLITE_NOTADB",), Status.INTERNAL, "{path} is not a SQLite database"),
    (("SQLITE_CORRUPT",), Status.INTERNAL, "{path} is damaged (the database file is corrupt)"),
    (("SQLITE_READONLY",), Status.INTERNAL, "{path} is read-only; Stigmer needs to write to it"),
    (("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"), Status.INTERNAL, "cannot open {path}"),
    (("SQLITE_IOERR",), Status.INTERNAL, "reading or writing {path} failed (disk I/O error)"),
]


def storage_error(error: sqlite3.Error, path: str) -> GRPCError:
    """The ``GRPCError`` that reports ``error`` to a caller."""
    name = getattr(error, "sqlite_errorname", "") or ""
    for prefixes, status, template in _RULES:
        if name.startswith(prefixes):
            return GRPCError(status, template.format(path=path))
    return GRPCError(Status.INTERNAL, f"storage error in {path}: {error}")
