"""GRPCError constructors with the status codes the proto documents.

Messages name what was wrong and never carry a secret value.
"""

from __future__ import annotations

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["aborted", "already_exists", "failed_precondition", "invalid_argument", "not_found", "unimplemented"]


def invalid_argument(field: str, problem: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, f"{field}: {problem}")


def not_found(what: str) -> GRPCError:
    return GRPCError(Status.NOT_FOUND, f"{what} not found")


def already_exists(message: str) -> GRPCError:
    return GRPCError(Status.ALREADY_EXISTS, message)


def aborted(message: str) -> GRPCError:
    return GRPCError(Status.ABORTED, message)


def failed_precondition(message: str) -> GRPCError:
    return GRPCError(Status.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> GRPCError:
    return GRPCError(Status.UNIMPLEMENTED, message)
