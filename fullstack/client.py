"""The CLI's side of Tier 2: start an execution's workflow, cancel it.

The workflow id is the execution id, and a second start of the same id is
refused by Temporal (whatever state the first is in), so an execution runs
as exactly one workflow however often it is started.
"""

from __future__ import annotations

import contextlib

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from .stack import Stack
from .workflow import WORKFLOW, ExecutionRun

__all__ = ["cancel_workflow", "start_workflow"]


async def _client(stack: Stack) -> Client:
    return await Client.connect(stack.temporal_address, namespace=stack.namespace)


async def start_workflow(stack: Stack, execution_id: str, lease_seconds: float) -> bool:
    """Starts the execution's workflow; False if one with its id already exists (nothing is started)."""
    client = await _client(stack)
    try:
        await client.start_workflow(
            WORKFLOW,
            ExecutionRun(execution_id, lease_seconds),
            id=execution_id,
            task_queue=stack.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def cancel_workflow(stack: Stack, execution_id: str) -> bool:
    """Requests cancellation of the execution's workflow; False if there is none running."""
    handle = (await _client(stack)).get_workflow_handle(execution_id)
    with contextlib.suppress(RPCError):
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.cancel()
            return True
    return False
