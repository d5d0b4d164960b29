"""Running a command's coroutine: the active backend, and errors as one line.

A command body is ``async def body(backend, **params)`` under ``@with_backend``
(or, where it must do something first, ``run(coroutine_function)``); ``run``
is the one place where ``GRPCError`` (and the few other failures a user can
cause) become ``click.ClickException`` (exit 1, one line on stderr, no
traceback).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend

__all__ = ["every_page", "open_backend", "run", "with_backend"]

T = TypeVar("T")
P = ParamSpec("P")


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # Imported here: every command module imports this one, and `stigmer --help` loads them all
    # for their one-line help; asyncio alone was a third of its start-up.
    import asyncio

    from grpclib import GRPCError

    try:
        return asyncio.run(main())
    except GRPCError as error:
        from ._output import users_enums

        detail = users_enums(" ".join((error.message or "no details").split()))  # one line, whatever was sent
        raise click.ClickException(f"{error.status.name}: {detail}") from None
    except TimeoutError:
        raise click.ClickException("DEADLINE_EXCEEDED: the backend did not answer in time") from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None  # 128 + SIGINT, as shells report Ctrl-C


@contextlib.asynccontextmanager
async def open_backend() -> AsyncIterator[Backend]:
    """The backend the active context names (see ``stigmer context``)."""
    from ._backends import backend_for
    from ._context import load_context

    async with backend_for(load_context()) as backend:
        yield backend


def with_backend(body: Callable[Concatenate[Backend, P], Awaitable[T]]) -> Callable[P, T]:
    """A command whose body runs on the active backend: ``async def body(backend, **params)``.

    The backend is opened before the body and closed after it, and errors
    are reported by ``run``. Put it under the click decorators.
    """

    @functools.wraps(body)
    def command(*args: P.args, **params: P.kwargs) -> T:
        async def main() -> T:
            async with open_backend() as backend:
                return await body(backend, *args, **params)

        return run(main)

    return command


async def every_page(
    list_rpc: Callable[[Any], Awaitable[Any]], request: Any, field: str, limit: int | None = None
) -> list[Any]:
    """The items of every page of a ``List*`` RPC, following ``next_page_token``, up to ``limit``."""
    import dataclasses

    from stigmer_backend.backends.rules.paging import MAX_PAGE_SIZE

    items: list[Any] = []
    while True:
        wanted = MAX_PAGE_SIZE if limit is None else min(limit - len(items), MAX_PAGE_SIZE)
        page = await list_rpc(dataclasses.replace(request, page_size=wanted))
        items += getattr(page, field)
        if not page.next_page_token or (limit is not None and len(items) >= limit):
            return items
        request = dataclasses.replace(request, page_token=page.next_page_token)
