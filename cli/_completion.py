"""Shell completion of what the active backend holds: agent names, execution ids, secret names.

click calls these while the shell completes a word (``_STIGMER_COMPLETE``,
see the README); they ask the backend with a short deadline and offer nothing,
silently, when it cannot answer, since a completion must never print an error
into the user's command line.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click
from click.shell_completion import CompletionItem

__all__ = ["agent_names", "execution_ids", "secret_names"]

_DEADLINE = 3.0
_MOST = 200  # a completion menu longer than this helps nobody


def agent_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    return _complete(
        incomplete, lambda b: b.list_agent_instances, pb.ListAgentInstancesRequest(), "agent_instances", "name"
    )


def execution_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    request = pb.ListExecutionsRequest(newest_first=True)
    return _complete(incomplete, lambda b: b.list_executions, request, "executions", "id")


def secret_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    return _complete(incomplete, lambda b: b.list_secrets, pb.ListSecretsRequest(), "secrets", "name")


def _complete(incomplete: str, rpc: Any, request: Any, field: str, attribute: str) -> list[CompletionItem]:
    # Imported here: every command module imports this one for its callbacks, and `stigmer --help` loads them all.
    import asyncio

    from ._runtime import every_page, open_backend

    async def names() -> list[str]:
        async with open_backend() as backend:
            found = await every_page(rpc(backend), request, field, limit=_MOST)
        return [getattr(item, attribute) for item in found]

    with contextlib.suppress(Exception):
        found = asyncio.run(asyncio.wait_for(names(), _DEADLINE))
        return [CompletionItem(name) for name in found if name.startswith(incomplete)]
    return []
