"""Whether Tier 2 is active for this CLI: the local stack runs and the CLI's backend is the one it serves.

Shared by ``agent execute`` (start the execution's workflow) and ``execution
cancel`` (cancel it too). Never imports ``temporalio`` unless the stack runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._context import LOCAL, load_context

if TYPE_CHECKING:
    from stigmer.fullstack.stack import Stack

__all__ = ["active_stack", "cancel_workflow"]


def active_stack() -> Stack | None:
    """The running local stack, if the active context is the local database it serves; else None."""
    context = load_context()
    if context.kind != LOCAL or context.url:
        return None
    from stigmer.fullstack.stack import StackError, running_stack

    try:
        return running_stack()
    except StackError:
        return None


async def cancel_workflow(stack: Stack, execution_id: str) -> bool:
    """Cancels the execution's workflow, if one runs (the backend is cancelled first, by the caller)."""
    from stigmer.fullstack.client import cancel_workflow as cancel

    return await cancel(stack, execution_id)
