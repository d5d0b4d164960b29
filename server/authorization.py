"""Who may call what: roles bound to credentials, checked before a handler reads or writes anything.

With one shared token every holder could read every secret: apply an agent
that references ``${.secrets.X}``, create an execution, claim it and call
``GetExecutionContext``; the lease-holder check compared a ``runner_id`` that
anyone can read with ``GetExecution``. So a server may be given a tokens file
(``stigmer server --tokens-file``) binding each token to a role and a name:

========  =================================================================
role      may call
========  =================================================================
admin     everything (a server's single ``--token-file`` token is admin)
person    read anything but secret values; apply agents that reference no
          secret; create and cancel executions; delete agents; list secrets
runner    read executions and agents; claim, update and get the context of
          executions, always as the ``runner_id`` its credential names
========  =================================================================

Secrets are put and deleted by admins only, and only admins may apply an
agent that references one: whoever chooses the model endpoint of an agent
holding a credential chooses where that credential is sent. A runner's
identity is its credential's name, never what it says: ``runner_id`` in
``UpdateExecutionStatus`` and ``GetExecutionContext`` must equal it. Every
refusal is ``PERMISSION_DENIED``, before anything is read or written.
SECURITY.md has the threat model.
"""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.rules import secret_refs, validation

__all__ = [
    "AuthorizedService",
    "Principal",
    "Role",
    "TokensFileError",
    "caller",
    "check_call",
    "check_request",
    "parse_tokens_file",
]

_SERVICE = "/stigmer.backend.v1.BackendService/"
_NAME = validation.TOKEN  # a runner id's pattern, so a runner's name can be its runner_id


class Role(enum.Enum):
    ADMIN = "admin"
    PERSON = "person"
    RUNNER = "runner"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its role and the name its credential gives it."""

    role: Role
    name: str


caller: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("stigmer_caller", default=None)
"""The principal of the call being handled (set by the gate; ``None`` when the server has no tokens)."""

_ALL = frozenset(Role)
_PEOPLE = frozenset({Role.ADMIN, Role.PERSON})
_RUNNERS = frozenset({Role.ADMIN, Role.RUNNER})
_ADMINS = frozenset({Role.ADMIN})

_ALLOWED: dict[str, frozenset[Role]] = {
    "GetBackendInfo": _ALL,
    "CreateExecution": _PEOPLE,
    "GetExecution": _ALL,
    "ListExecutions": _ALL,
    "UpdateExecutionStatus": _RUNNERS,
    "CancelExecution": _PEOPLE,
    "WatchExecution": _ALL,
    "GetExecutionContext": _RUNNERS,
    "ApplyAgentInstance": _PEOPLE,
    "GetAgentInstance": _ALL,
    "ListAgentInstances": _ALL,
    "DeleteAgentInstance": _PEOPLE,
    "PutSecret": _ADMINS,
    "ListSecrets": _PEOPLE,
    "DeleteSecret": _ADMINS,
}
_BINDS_RUNNER_ID = frozenset({"UpdateExecutionStatus", "GetExecutionContext"})


def _denied(principal: Principal, what: str) -> GRPCError:
    return GRPCError(Status.PERMISSION_DENIED, f"{principal.role.value} {principal.name!r} may not {what}")


def check_call(method: str, principal: Principal) -> None:
    """``PERMISSION_DENIED`` unless ``principal``'s role may call ``method`` at all."""
    if not method.startswith(_SERVICE):
        return  # reflection: describes the API, which every caller may know
    rpc = method[len(_SERVICE) :]
    if principal.role not in _ALLOWED.get(rpc, _ADMINS):
        raise _denied(principal, f"call {rpc}")


def check_request(method: str, principal: Principal, request: Any) -> None:
    """The checks that depend on the request: a runner's own ``runner_id``, secret references."""
    rpc = method[len(_SERVICE) :] if method.startswith(_SERVICE) else ""
    if principal.role is Role.RUNNER and rpc in _BINDS_RUNNER_ID and request.runner_id != principal.name:
        raise _denied(principal, f"act as runner_id {request.runner_id!r}; its credential is for {principal.name!r}")
    if principal.role is not Role.ADMIN and rpc == "ApplyAgentInstance" and request.spec is not None:
        spec = request.spec
        texts = [variable.value for variable in spec.env]
        if spec.model is not None:
            texts.append(spec.model.credentials)
        if any(_references(text) for text in texts):
            raise _denied(principal, "apply an agent instance that references secrets (only admins may)")


def _references(text: str) -> bool:
    try:
        return bool(secret_refs.find(text))
    except secret_refs.MalformedReference:
        return False  # validation reports it as INVALID_ARGUMENT


class AuthorizedService:
    """A grpclib service whose every call is checked against the caller's role (see ``caller``)."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def __mapping__(self) -> dict[str, Any]:
        return {
            method: handler._replace(func=self._authorized(method, handler.func))
            for method, handler in self._service.__mapping__().items()
        }

    @staticmethod
    def _authorized(method: str, func: Any) -> Any:
        async def authorized(stream: Any) -> None:
            principal = caller.get()
            if principal is not None and principal.role is not Role.ADMIN:
                check_call(method, principal)
                read = stream.recv_message

                async def recv_message() -> Any:
                    request = await read()
                    if request is not None:
                        check_request(method, principal, request)
                    return request

                stream.recv_message = recv_message
            await func(stream)

        return authorized


class TokensFileError(ValueError):
    """The tokens file is malformed; the message names the line."""


def parse_tokens_file(text: str, source: str, is_token_safe: Any, min_length: int) -> dict[str, Principal]:
    """``{token: Principal}`` from lines ``ROLE NAME TOKEN`` (``#`` starts a comment).

    :param is_token_safe: whether a token fits an HTTP header unchanged.
    :param min_length: the shortest token accepted.
    """
    tokens: dict[str, Principal] = {}
    names: set[tuple[Role, str]] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{source}, line {number}"
        if len(fields) != 3:
            raise TokensFileError(f"{where}: expected 'ROLE NAME TOKEN' (three fields)")
        role_text, name, token = fields
        try:
            role = Role(role_text)
        except ValueError:
            raise TokensFileError(
                f"{where}: unknown role {role_text!r} (use {', '.join(r.value for r in Role)})"
            ) from None
        if not _NAME.fullmatch(name):
            raise TokensFileError(f"{where}: the name must match ^{_NAME.pattern}$")
        if not is_token_safe(token) or len(token) < min_length:
            raise TokensFileError(
                f"{where}: the token must be at least {min_length} printable ASCII characters without spaces"
            )
        if token in tokens:
            raise TokensFileError(f"{where}: this token is already given to another name")
        if (role, name) in names:
            raise TokensFileError(f"{where}: {role.value} {name!r} appears twice")
        tokens[token] = Principal(role, name)
        names.add((role, name))
    if not tokens:
        raise TokensFileError(f"{source} holds no tokens")
    return tokens
