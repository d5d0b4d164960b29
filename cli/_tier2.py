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

__all__ = ["RESTART_WAIT", "active_stack", "cancel_workflow", "served_storage"]


def served_storage() -> str | None:
    """What a stack started now serves for the active context (``Stack.backend``); None for a remote context."""
    context = load_context()
    if context.is_remote:
        return None
    return "" if context.kind == LOCAL and not context.url else context.url


RESTART_WAIT = 60.0
"""Seconds `agent execute` waits for a part of the stack its supervisor is restarting (Temporal takes ~5 s)."""


def active_stack(*, sdk_needed: bool = True) -> Stack | None:
    """The local stack, if one was started on the storage the active context names; else None.

    :param sdk_needed: the caller will start a workflow. Then the stack's Temporal
        and server must be up: while the supervisor restarts one, this waits up to
        ``RESTART_WAIT`` s for it; a part that is down for good (supervisor gone, or it
        gave up) or not back in time is one line naming it, before anything is
        created — never an execution run in-process behind the user's back. So is a
        stack that runs while this interpreter has no Temporal SDK (another
        virtualenv on the same ``$STIGMER_HOME``): an execution made without its
        workflow would stay PENDING, as no stack worker polls the backend.
        Without it (``execution cancel``) a stack whose Temporal is down is None:
        the backend's cancel is enough, the activity follows it.
    """
    storage = served_storage()
    if storage is None:
        return None
    from stigmer_backend.fullstack.stack import StackError, load_stack, ready_stack

    try:
        stack = load_stack()
    except StackError:
        return None
    if stack is None or stack.backend != storage:
        return None
    if not sdk_needed:
        temporal = stack.part("temporal")
        return stack if temporal is not None and temporal.alive() else None
    from stigmer_backend.fullstack.requirements import MissingExtra, require_sdk

    try:
        require_sdk()
    except MissingExtra as error:
        raise click.ClickException(f"the local stack runs (`stigmer local status`); {error}") from None
    try:
        return ready_stack(stack, needed=("temporal", "server"), wait=RESTART_WAIT, on_status=status)
    except StackError as error:
        raise click.ClickException(f"{error}; nothing was created") from None


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
