"""Whether Tier 2 is active for this CLI: the local stack runs and serves the storage the CLI's context names.

Shared by ``agent execute`` (start the execution's workflow) and ``execution
cancel`` (cancel it too). Never imports ``temporalio`` unless the stack runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._context import LOCAL, load_context

if TYPE_CHECKING:
    from stigmer_backend.fullstack.stack import Stack

__all__ = ["active_stack", "cancel_workflow", "served_storage"]


def served_storage() -> str | None:
    """What a stack started now serves for the active context (``Stack.backend``); None for a remote context."""
    context = load_context()
    if context.is_remote:
        return None
    return "" if context.kind == LOCAL and not context.url else context.url


def active_stack() -> Stack | None:
    """The running local stack, if it serves the storage the active context names; else None."""
    storage = served_storage()
    if storage is None:
        return None
    from stigmer_backend.fullstack.stack import StackError, running_stack

    try:
        stack = running_stack()
    except StackError:
        return None
    return stack if stack is not None and stack.backend == storage else None


async def cancel_workflow(stack: Stack, execution_id: str) -> bool:
    """Cancels the execution's workflow, if one runs (the backend is cancelled first, by the caller)."""
    from stigmer_backend.fullstack.client import cancel_workflow as cancel

    return await cancel(stack, execution_id)
