"""What a person reads after a conformance run: why each test failed, per area, and the verdict.

The default report of ``stigmer conformance run`` is built here from what the
plugin records, one line per failure: the test's stable id, what was expected
against what the backend did, and the contract sentence it checks (its id in
``TRACEABILITY.md``). Failures with the same cause in one area share a line,
so a backend that implements nothing yet gets a page, not thousands of lines
of tracebacks (``-v`` still shows those). A target that cannot be used at all
is one line before any test runs (``preflight_problem``).
"""

from __future__ import annotations

import fnmatch
import functools
import ssl
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

__all__ = ["Failure", "area_table", "clause_for", "failure_lines", "failure_reason", "preflight_problem"]

_MAX_REASON = 200
_GENERATED = "/gen/stigmer/backend/v1/"


@dataclass(frozen=True)
class Failure:
    test_id: str
    reason: str  # expected against actual, one line
    clause: str  # the contract sentence's id in the traceability matrix, or ""

    @property
    def area(self) -> str:
        return self.test_id.split("/", 1)[0]


def failure_reason(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """One line: what the test expected and what the backend did, from the exception a test failed with."""
    from grpclib import GRPCError

    error = excinfo.value
    if isinstance(error, GRPCError):
        rpc = _rpc_of(excinfo)
        where = f" from {rpc}" if rpc else ""
        reason = f"expected a response{where}, got {error.status.name}" + (
            f": {error.message}" if error.message else ""
        )
    elif isinstance(error, AssertionError):
        reason = str(error).strip().split("\n", 1)[0] or "assertion failed"
    else:
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return one_line(reason)


def one_line(text: str) -> str:
    """``text`` on one printable line of at most ``_MAX_REASON`` characters (backends' messages are not trusted)."""
    text = " ".join(text.split()).rstrip(":")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _rpc_of(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """The RPC whose generated method raised, as the proto names it (``apply_agent_instance`` -> ApplyAgentInstance)."""
    for entry in reversed(excinfo.traceback):
        if _GENERATED in str(entry.path).replace("\\", "/"):
            name = entry.frame.code.name
            if not name.startswith("_"):
                return "".join(part.capitalize() for part in name.split("_"))
    return ""


@functools.cache
def _matrix() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(sentence id, its test-id patterns) for every tested sentence of the matrix; empty if it cannot be read."""
    try:
        from .traceability import read_matrix

        mappings = read_matrix()
    except (ImportError, OSError):
        return ()
    return tuple((sid, tuple(rest.split())) for sid, (kind, rest) in mappings.items() if kind == "tests" and rest)


def clause_for(test_id: str) -> str:
    """The id of the contract sentence ``test_id`` checks: the one whose pattern names it most precisely."""
    best, best_score = "", -1
    for sentence_id, patterns in _matrix():
        for pattern in patterns:
            if fnmatch.fnmatchcase(test_id, pattern):
                score = len(pattern) - 10 * pattern.count("*")
                if score > best_score:
                    best, best_score = sentence_id, score
    return best


def failure_lines(failures: list[Failure]) -> list[str]:
    """One line per failing test; tests of one area failing for one reason share a line, all ids listed."""
    groups: dict[tuple[str, str], list[Failure]] = defaultdict(list)
    for failure in sorted(failures, key=lambda f: f.test_id):
        groups[(failure.area, failure.reason)].append(failure)
    lines = []
    for (area, reason), members in groups.items():
        clauses = sorted({f.clause for f in members if f.clause})
        checks = f" [checks {', '.join(clauses)}]" if clauses else ""
        if len(members) == 1:
            lines.append(f"FAIL {members[0].test_id}: {reason}{checks}")
        else:
            ids = ", ".join(f.test_id for f in members)
            lines.append(f"FAIL {len(members)} {area} tests: {reason}: {ids}{checks}")
    return lines


_COLUMNS = ("passed", "failed", "known-failure", "skipped")


def area_table(categories: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Per area: how many passed, failed, failed as known, were skipped as optional."""
    width = max([len("area"), *map(len, categories)])
    lines = ["area".ljust(width) + "".join(f"  {column:>13}" for column in _COLUMNS)]
    for area, counts in categories.items():
        lines.append(area.ljust(width) + "".join(f"  {counts.get(column, 0):>13}" for column in _COLUMNS))
    return lines


def preflight_problem(target: str, error: BaseException, *, tls: bool, token: bool) -> str:
    """Why ``target`` cannot be tested at all, in one line with what to do about it."""
    from grpclib import GRPCError
    from grpclib.const import Status

    if isinstance(error, GRPCError):
        if error.status == Status.UNAUTHENTICATED:
            if token:
                return f"{target} refused the bearer token (UNAUTHENTICATED): check --token-file"
            return (
                f"{target} requires a bearer token (UNAUTHENTICATED): give --token-file FILE "
                "or set STIGMER_CONFORMANCE_TOKEN"
            )
        message = f": {one_line(error.message)}" if error.message else ""
        return f"{target} failed GetBackendInfo with {error.status.name}{message}"
    if isinstance(error, ssl.SSLError):
        hint = "is it a plaintext server? then drop --tls/--ca" if "WRONG_VERSION" in str(error) else "check --ca"
        return f"TLS handshake with {target} failed ({one_line(error.reason or str(error))}): {hint}"
    if isinstance(error, ConnectionRefusedError):
        return f"cannot reach {target}: connection refused (is the server running, on this port?)"
    if isinstance(error, OSError):
        return f"cannot reach {target}: {one_line(error.strerror or str(error))}"
    if isinstance(error, TimeoutError):
        return f"{target} did not answer GetBackendInfo within 30 s"
    if type(error).__module__.startswith(("h2", "grpclib")) or "StreamTerminated" in type(error).__name__:
        if not tls:
            kind = type(error).__name__
            return f"{target} does not speak plaintext gRPC ({kind}): if it serves TLS, add --tls or --ca FILE"
        return f"{target} broke off the gRPC call ({type(error).__name__}: {one_line(str(error))})"
    return f"cannot use {target}: {type(error).__name__}: {one_line(str(error))}"
