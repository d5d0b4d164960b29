"""psycopg errors to the status codes the proto documents, at one boundary.

Most specific first, by SQLSTATE class: the server out of disk or memory is
``RESOURCE_EXHAUSTED``; a connection that failed, was lost, or a server
shutting down is ``UNAVAILABLE`` (transient: nothing was committed, or the
caller cannot know and retries a safe RPC); wrong credentials, a missing
database or missing privileges are ``INTERNAL`` naming the database, since
only an operator can fix them, and so is a connection string libpq cannot
parse (``FAILED_PRECONDITION``). Messages name the database by host, port and
name, never by the connection string, which may hold a password; nor do they
repeat what libpq quotes from a string it could not parse.
"""

from __future__ import annotations

import re

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
    (("3D000",), Status.INTERNAL, "the {where} does not exist; create it (createdb) first"),
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


def _hidden(problem: str) -> str:
    """libpq's complaint about a connection string without the parts it quotes, which may be the password.

    An unknown query parameter's name is kept: it is never the password, and it is the whole problem.
    """
    first = problem.splitlines()[0].strip() if problem.strip() else "unreadable"
    if re.fullmatch(r'invalid URI query parameter: "[\w-]*"', first):
        return first
    hidden = re.sub(r'"[^"]*("|$)', '"…"', first)  # a quote left open hides the rest of the line
    return hidden + (" (quoted parts not shown: they may hold the password)" if hidden != first else "")


def connection_error(error: psycopg.Error, where: str) -> GRPCError:
    """Why a first connection to ``where`` failed, in one line: unreachable, credentials, no such database.

    libpq reports connection failures as text without a SQLSTATE; the
    server's reason follows ``FATAL:``, libpq's own (refused, no such host,
    timeout) the last ``failed:`` of its first line.
    """
    text = str(error).strip()
    if isinstance(error, psycopg.ProgrammingError):  # libpq could not parse the connection string
        return GRPCError(Status.FAILED_PRECONDITION, f"the connection string of {where} is not valid: {_hidden(text)}")
    fatal = re.search(r"FATAL:\s*(.+)", text)
    if fatal is not None:
        reason = fatal.group(1).strip()
        if re.fullmatch(r'database ".*" does not exist', reason):
            return GRPCError(Status.INTERNAL, f"the {where} does not exist; create it (createdb) first")
        if re.search(r"authentication|role .* does not exist|pg_hba\.conf|password", reason):
            return GRPCError(Status.INTERNAL, f"the server of {where} refused the credentials: {reason}")
        return GRPCError(Status.UNAVAILABLE, f"the server of {where} refused the connection: {reason}")
    first = text.splitlines()[0] if text else type(error).__name__
    reason = first.rpartition("failed: ")[2] or first
    return GRPCError(Status.UNAVAILABLE, f"cannot reach {where}: {reason}")
