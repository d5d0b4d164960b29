"""Whether Tier 2 is active for this CLI: the local stack runs and serves the storage the CLI's context names.

Shared by ``agent execute`` (start the execution's workflow) and ``execution
cancel`` (cancel it too). Never imports ``temporalio`` unless the stack runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ._context import LOCAL, load_context
from ._output import status

if TYPE_CHECKING:
    from stigmer_backend.fullstack.stack import Stack

__all__ = ["active_stack", "cancel_workflow", "served_storage"]


def served_storage() -> str | None:
    """What a stack started now serves for the active context (``Stack.backend``); None for a remote context."""
    context = load_context()
    if context.is_remote:
        return None
    return "" if context.kind == LOCAL and not context.url else context.url


def active_stack(*, sdk_needed: bool = True) -> Stack | None:
    """The running local stack, if it serves the storage the active context names; else None.

    :param sdk_needed: the caller will start a workflow, so a stack that runs while this
        interpreter has no Temporal SDK (another virtualenv on the same ``$STIGMER_HOME``)
        is one line saying what to install, before anything is created: an execution made
        without its workflow would stay PENDING, as no stack worker polls the backend.
    """
    storage = served_storage()
    if storage is None:
        return None
    from stigmer_backend.fullstack.stack import StackError, running_stack

    try:
        stack = running_stack()
    except StackError:
        return None
    if stack is None or stack.backend != storage:
        return None
    if sdk_needed:
        from stigmer_backend.fullstack.requirements import MissingExtra, require_sdk

        try:
            require_sdk()
        except MissingExtra as error:
            raise click.ClickException(f"the local stack runs (`stigmer local status`); {error}") from None
    return stack


async def cancel_workflow(stack: Stack, execution_id: str) -> bool:
    """Cancels the execution's workflow, if one runs (the backend is cancelled first, by the caller).

    Without the Temporal SDK here, the workflow is left to end by itself: its activity
    follows the backend, sees the cancel at once and returns, so nothing stays running.
    """
    from stigmer_backend.fullstack.requirements import MissingExtra, require_sdk

    try:
        require_sdk()
    except MissingExtra as error:
        status(f"its Temporal workflow, if any, ends as its activity sees the cancel ({error})")
        return False
    from stigmer_backend.fullstack.client import cancel_workflow as cancel

    return await cancel(stack, execution_id)
