"""When a remote call may be tried again, and how long to wait before it.

The contract (``backend_service.proto``, the service comment) lists the RPCs
that are safe to repeat after ``UNAVAILABLE``: every ``Get*``, ``List*`` and
``Watch*`` RPC, ``GetBackendInfo``, ``CreateExecution`` (its ``request_id``
makes a repeat return the first execution), ``ApplyAgentInstance`` and
``PutSecret`` (declarative). The others (updates, cancels, deletes) may have
taken effect before the connection broke, so repeating one could report its
own success as a failure: they are never retried here.

Only ``UNAVAILABLE`` is retried. ``DEADLINE_EXCEEDED`` is not: the deadline
is the caller's budget for the whole call, retries included, so once it is
spent there is nothing left to retry with.
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["RetryPolicy", "is_retry_safe", "is_transient"]

# By name, as the proto's comment says it: prefixes for the read families, then the three idempotent writes.
_SAFE_PREFIXES = ("get_", "list_", "watch_")
_SAFE_WRITES = frozenset({"create_execution", "apply_agent_instance", "put_secret"})


def is_retry_safe(rpc: str) -> bool:
    """Whether the RPC (its Python method name, e.g. ``create_execution``) may be repeated."""
    return rpc.startswith(_SAFE_PREFIXES) or rpc in _SAFE_WRITES


def is_transient(error: GRPCError) -> bool:
    """``UNAVAILABLE``, except a TLS failure: a certificate that does not verify will not verify next time."""
    return error.status == Status.UNAVAILABLE and not isinstance(error.__cause__, ssl.SSLError)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts of a retry-safe call.

    :param max_attempts: attempts in all, the first included; 1 disables retries.
    :param initial_backoff: seconds before the second attempt (before jitter).
    :param max_backoff: ceiling of one wait, in seconds.
    :param multiplier: growth of the wait from one attempt to the next.

    With the defaults the waits are about 0.2, 0.4, 0.8, 1.6 and 3.2 s: a call
    rides out a server restart of a few seconds, and the per-call deadline
    still bounds the total.
    """

    max_attempts: int = 6
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        "Equal jitter": half the exponential wait, plus a random part up to the
        other half, so that clients cut off together do not return together,
        and no wait is near zero.
        """
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
