"""psycopg errors to the status codes the proto documents, at one boundary.

Most specific first, by SQLSTATE class: the server out of disk or memory is
``RESOURCE_EXHAUSTED``; a connection that failed, was lost, or a server
shutting down is ``UNAVAILABLE`` (transient: nothing was committed, or the
caller cannot know and retries a safe RPC); wrong credentials, a missing
database or missing privileges are ``INTERNAL`` naming the database, since
only an operator can fix them. Messages name the database by host, port and
name, never by the connection string, which may hold a password.
"""

from __future__ import annotations

import psycopg
from grpclib import GRPCError
from grpclib.const import Status
from psycopg_pool import PoolTimeout

__all__ = ["connection_error", "describe", "storage_error"]

_RULES: list[tuple[tuple[str, ...], Status, str]] = [
    (("53100",), Status.RESOURCE_EXHAUSTED, "the database server {where} is out of disk space; nothing was written"),
    (("53",), Status.RESOURCE_EXHAUSTED, "the database server {where} is out of resources; try again"),
    (("08", "57P"), Status.UNAVAILABLE, "lost the connection to {where}; try again"),
    (("40001", "40P01"), Status.UNAVAILABLE, "a concurrent write to {where} conflicted; try again"),
    (("28P01", "28000"), Status.INTERNAL, "the database server {where} refused the credentials"),
    (("3D000",), Status.INTERNAL, "the database {where} does not exist; create it (createdb) first"),
    (("42501",), Status.INTERNAL, "the database user lacks a privilege Stigmer needs in {where}"),
]


def describe(conninfo: str) -> str:
    """``database NAME on HOST:PORT``, from a connection string, without user or password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database"
    host = str(params.get("host") or "the default host")
    port = params.get("port")
    name = params.get("dbname") or params.get("user") or "(default)"
    return f"database {name} on {host}{f':{port}' if port else ''}"


def storage_error(error: Exception, where: str) -> GRPCError:
    """The ``GRPCError`` that reports ``error``, raised while using ``where``, to a caller."""
    if isinstance(error, PoolTimeout):
        return GRPCError(Status.UNAVAILABLE, f"no connection to {where} became free in time; try again")
    sqlstate = getattr(error, "sqlstate", None) or ""
    for prefixes, status, template in _RULES:
        if sqlstate.startswith(prefixes):
            return GRPCError(status, template.format(where=where))
    if isinstance(error, psycopg.OperationalError):
        return GRPCError(Status.UNAVAILABLE, f"lost the connection to {where}; try again")
    diag = getattr(error, "diag", None)
    detail = (diag.message_primary if diag is not None else None) or type(error).__name__
    return GRPCError(Status.INTERNAL, f"storage error in {where}: {detail} (SQLSTATE {sqlstate or 'none'})")


def connection_error(error: psycopg.Error, where: str) -> GRPCError:
    """Why a first connection to ``where`` failed, in one line: unreachable, credentials, no such database."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    if sqlstate:
        return storage_error(error, where)
    # libpq's own message says what happened (refused, no such host, timeout); keep its last line only.
    reason = " ".join(str(error).strip().splitlines()[-1:]).removeprefix("connection failed: ")
    return GRPCError(Status.UNAVAILABLE, f"cannot reach {where}: {reason}")
