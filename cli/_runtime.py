"""Running a command's coroutine: the active backend, and errors as one line.

Every command body is ``run(coroutine_function)``; this is the one place
where ``GRPCError`` (and the few other failures a user can cause) become
``click.ClickException`` (exit 1, one line on stderr, no traceback).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from stigmer.backends.base import Backend

__all__ = ["every_page", "open_backend", "run"]

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    # Imported here: every command module imports this one, and `stigmer --help` loads them all
    # for their one-line help; asyncio alone was a third of its start-up.
    import asyncio

    from grpclib import GRPCError

    try:
        return asyncio.run(main())
    except GRPCError as error:
        detail = " ".join((error.message or "no details").split())  # one line, whatever the backend sent
        raise click.ClickException(f"{error.status.name}: {detail}") from None
    except TimeoutError:
        raise click.ClickException("DEADLINE_EXCEEDED: the backend did not answer in time") from None
    except KeyboardInterrupt:
        raise click.Abort() from None


@contextlib.asynccontextmanager
async def open_backend() -> AsyncIterator[Backend]:
    """The backend the active context names (see ``stigmer context``)."""
    from ._context import load_context

    context = load_context()
    if context.is_remote:
        from stigmer.backends.cloud import CloudBackend

        backend: Backend = CloudBackend.from_saved_login(context)
    else:
        from stigmer.backends.sqlite import SqliteBackend

        backend = SqliteBackend()
    async with backend:
        yield backend


async def every_page(
    list_rpc: Callable[[Any], Awaitable[Any]], request: Any, field: str, limit: int | None = None
) -> list:
    """The items of every page of a ``List*`` RPC, following ``next_page_token``, up to ``limit``."""
    import dataclasses

    items: list = []
    while True:
        wanted = 1000 if limit is None else min(limit - len(items), 1000)
        page = await list_rpc(dataclasses.replace(request, page_size=wanted))
        items += getattr(page, field)
        if not page.next_page_token or (limit is not None and len(items) >= limit):
            return items
        request = dataclasses.replace(request, page_token=page.next_page_token)
