"""Endpoints that break the authentication contract, one defect each, for the mutation harness.

``python -m tests.conformance.broken_server NAME TOKEN_FILE`` serves a
``MemoryBackend`` through Stigmer's real server on a free loopback port,
with the call gate replaced by the broken one, and prints ``host:port``
(the conformance suite's ``--stigmer-server-command`` protocol).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from stigmer_backend.backends.memory import MemoryBackend
from stigmer_backend.server import backend_server
from stigmer_backend.server.gate import HEALTH_PREFIX, CallGate

from .broken_backends import Mutant

SERVICE = "/stigmer.backend.v1.BackendService/"
SERVER_MUTANTS: list[Mutant] = []
GATES: dict[str, type[CallGate]] = {}
_UNARY = "authentication/Unauthenticated/a_unary_call_without_valid_credentials/"


def breaks(must_fail: str):
    def register(cls):
        SERVER_MUTANTS.append(Mutant(cls.__name__, "authentication", must_fail, cls.__doc__.strip().splitlines()[0]))
        GATES[cls.__name__] = cls
        return cls

    return register


@breaks("authentication/Unauthenticated/a_watch_without_valid_credentials/no-token")
class AuthSkipsStreams(CallGate):
    """Checks the token on unary calls only: `WatchExecution` is open to anyone."""

    def _authenticate(self, method, stream):
        if method != SERVICE + "WatchExecution":
            super()._authenticate(method, stream)


@breaks(_UNARY + "wrong-token-GetExecution")
class AuthAcceptsAnyToken(CallGate):
    """Checks that a bearer token is present, not that it is the right one."""

    def _authenticate(self, method, stream):
        if not stream.metadata.getall("authorization", []):
            super()._authenticate(method, stream)


@breaks(_UNARY + "no-token-GetBackendInfo")
class AuthExemptsBackendInfo(CallGate):
    """Lets `GetBackendInfo` through without credentials."""

    def _authenticate(self, method, stream):
        if method != SERVICE + "GetBackendInfo":
            super()._authenticate(method, stream)


@breaks(_UNARY + "no-token-ApplyAgentInstance")
class AuthChecksAfterTheCall(CallGate):
    """Runs a unary call first and refuses it afterwards: the write has already happened."""

    def admit(self, method, handler, *, streaming):
        if streaming or method.startswith(HEALTH_PREFIX) or self._expected is None:
            return super().admit(method, handler, streaming=streaming)

        async def late(stream):
            await handler(stream)
            self._authenticate(method, stream)

        return late


async def _serve(gate: str, token: str) -> None:
    from stigmer_backend.server.startup import listening_socket

    backend_server.CallGate = GATES[gate]  # this process serves one broken endpoint and nothing else
    sock = listening_socket("127.0.0.1", 0)

    def listening(address):
        print(f"listening on {address[0]}:{address[1]}", flush=True)

    await backend_server.serve_until_signalled(MemoryBackend(), sock, token=token, grace=1, on_listening=listening)


if __name__ == "__main__":
    name, token_file = sys.argv[1:3]
    asyncio.run(_serve(name, Path(token_file).read_text().strip()))
