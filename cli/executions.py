"""``stigmer execution``: inspect and control executions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ._agent_refs import agent_ref
from ._completion import agent_names, execution_ids
from ._output import emit, for_terminal, output_option, status, when
from ._runtime import every_page, open_backend, run, with_backend
from ._tier2 import active_stack, cancel_workflow

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["execution"]

PHASES = ("pending", "running", "succeeded", "failed", "cancelled")


EXECUTION_COLUMNS: list[tuple[str, Callable[[pb.Execution], object]]] = [
    ("ID", lambda e: e.id),
    ("AGENT", lambda e: e.agent_instance_name),
    ("PHASE", lambda e: e.status.phase.name if e.status is not None else None),
    ("VERSION", lambda e: e.version),
    ("CREATED", lambda e: when(e.create_time)),
    ("MESSAGE", lambda e: (e.status.message or None) if e.status is not None else None),
]


@click.group()
def execution() -> None:
    """Executions: list, get, watch, cancel."""


@execution.command("list")
@click.option(
    "--agent", "agent_name", shell_complete=agent_names, help="Only executions of this agent instance (name or id)."
)
@click.option("--phase", "phases", multiple=True, type=click.Choice(PHASES), help="Only these phases (repeatable).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="At most this many.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@output_option
@with_backend
async def list_executions(
    backend: Backend, agent_name: str | None, phases: tuple[str, ...], limit: int, oldest_first: bool, output: str
) -> None:
    """List executions, newest first (ListExecutions)."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    agent_id = ""
    if agent_name:
        agent = (
            await backend.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=agent_ref(agent_name)))
        ).agent_instance
        assert agent is not None  # GetAgentInstance answers with it or fails NOT_FOUND
        agent_id = agent.id
    request = pb.ListExecutionsRequest(
        agent_instance_id=agent_id,
        phases=[pb.ExecutionPhase[p.upper()] for p in phases],
        newest_first=not oldest_first,
    )
    found = await every_page(backend.list_executions, request, "executions", limit)
    emit(output, {"executions": found}, EXECUTION_COLUMNS, rows=found)


@execution.command("get")
@click.argument("execution_id", shell_complete=execution_ids)
@output_option
@with_backend
async def get_execution(backend: Backend, execution_id: str, output: str) -> None:
    """Show one execution (GetExecution)."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    found = (await backend.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
    assert found is not None  # GetExecution answers with it or fails NOT_FOUND
    if output == "table":
        _describe(found)
    else:
        emit(output, found, [])


def _describe(e: pb.Execution) -> None:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    s = e.status or pb.ExecutionStatus()
    lines = [
        ("id", e.id),
        ("agent", f"{e.agent_instance_name} ({e.agent_instance_id})"),
        ("phase", s.phase.name),
        ("version", e.version),
        ("message", s.message),
        ("runner", s.runner_id),
        ("created", when(e.create_time)),
        ("started", when(s.start_time)),
        ("ended", when(s.end_time)),
        ("lease until", when(s.lease_expire_time)),
        ("input", e.input.message if e.input else None),
        ("output", s.output.text if s.output else None),
        ("error", f"{s.error.code}: {s.error.message}" if s.error else None),
    ]
    for label, value in lines:
        if value not in (None, ""):
            click.echo(for_terminal(f"{label + ':':<13}{value}"))


@execution.command("watch", epilog="Exit code: 0 once the execution has ended, whatever its phase.")
@click.argument("execution_id", shell_complete=execution_ids)
@output_option
def watch_execution(execution_id: str, output: str) -> None:
    """Follow an execution until it ends (WatchExecution): each phase change, then its output or error.

    Lease renewals (a running execution's new versions in the same phase)
    are not shown. -o json prints one object per line, per phase change.
    """

    async def main() -> None:
        from stigmer_backend.gen.stigmer.backend import v1 as pb

        shown: tuple[pb.ExecutionPhase, str] | None = None
        async with open_backend() as backend:
            async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
                e = response.execution
                assert e is not None and e.status is not None  # every event carries the execution as it is now
                if (e.status.phase, e.status.runner_id) == shown:
                    continue  # a lease renewal
                shown = (e.status.phase, e.status.runner_id)
                if output == "table":
                    message = f": {e.status.message}" if e.status.message else ""
                    click.echo(for_terminal(f"v{e.version} {e.status.phase.name}{message}"))
                    if e.status.phase == pb.ExecutionPhase.SUCCEEDED and e.status.output:
                        click.echo(for_terminal(e.status.output.text))
                    elif e.status.error:
                        click.echo(for_terminal(f"error: {e.status.error.code}: {e.status.error.message}"))
                elif output == "json":  # one object per line, so a consumer can stream them
                    import json

                    click.echo(for_terminal(json.dumps(e.to_dict(), ensure_ascii=False)))
                else:
                    click.echo("---")
                    emit(output, e, [])

    run(main)


@execution.command("cancel")
@click.argument("execution_id", shell_complete=execution_ids)
@click.option("--reason", default="cancelled from the command line", show_default=True, help="Stored as the message.")
@with_backend
async def cancel_execution(backend: Backend, execution_id: str, reason: str) -> None:
    """Cancel a pending or running execution (CancelExecution)."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    request = pb.CancelExecutionRequest(execution_id=execution_id, reason=reason)
    cancelled = (await backend.cancel_execution(request)).execution
    assert cancelled is not None  # CancelExecution answers with it or fails
    status(f"execution {cancelled.id} cancelled (version {cancelled.version})")
    stack = active_stack(sdk_needed=False)  # the backend's cancel is done; the workflow follows it
    if stack is not None and await cancel_workflow(stack, execution_id):  # Tier 2: its workflow and activity too
        status(f"its Temporal workflow {execution_id} was cancelled")
