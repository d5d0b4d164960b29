"""The backend a CLI context opens.

A storage kind is opened through ``stigmer_backend.backends.registry``, the
one table of storage backends (``STORAGE_BACKENDS``), which ``stigmer server
--backend`` and the conformance suite read too. The remote kind is built
from the saved login (endpoint, CA file, token), which is the CLI's state:
the adapter never reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, Unpack

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.registry import open_storage, require_kind

from ._context import REMOTE, Context

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.backends.cloud import CloudBackend, RetryPolicy

    class CloudOptions(TypedDict, total=False):
        """What ``from_saved_login`` passes on to ``CloudBackend``."""

        timeout: float | None
        watch_timeout: float | None
        retry: RetryPolicy | None


__all__ = ["backend_for", "from_saved_login"]


def backend_for(context: Context) -> Backend:
    """The backend ``context`` names."""
    if context.kind == REMOTE:
        return from_saved_login(context)
    require_kind(context.kind, REMOTE)
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
