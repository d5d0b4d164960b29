"""``stigmer runner``: a process that claims and runs executions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ._completion import agent_names
from ._output import status
from ._runtime import with_backend

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend

__all__ = ["runner"]


@click.group()
def runner() -> None:
    """Runners: long-running workers that claim PENDING executions and run them."""


@runner.command("start")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True, help="Executions run at once.")
@click.option(
    "--runner-id",
    callback=lambda ctx, param, value: _checked_runner_id(value),
    help="This runner's id, stored in what it claims: letters, digits and . _ : - (default: HOSTNAME-PID).",
)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    shell_complete=agent_names,
    help="Only executions of this agent instance (repeatable).",
)
@click.option(
    "--lease",
    type=click.FloatRange(1, 3600),
    default=30,
    show_default=True,
    help="Seconds each claim holds an execution; renewed every third of it. A runner killed outright "
    "leaves its executions FAILED LEASE_EXPIRED within this time.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 86_400),
    default=30,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds running executions get to finish before they are cancelled.",
)
@with_backend
async def start(
    backend: Backend, concurrency: int, runner_id: str | None, agents: tuple[str, ...], lease: float, grace: float
) -> None:
    """Serve the active backend (see `stigmer context`) until SIGTERM or Ctrl-C.

    Finds PENDING executions (those of `stigmer agent execute --detach`),
    claims each with a compare-and-set, so any number of runners on any
    number of machines can serve one backend and each execution runs once,
    and runs up to --concurrency at once. An idle backend is asked for work
    at most every 2 s after a short back-off. On SIGTERM/SIGINT: no new
    claims; running executions get --grace seconds, then are cancelled with
    a reason; exit 0 with nothing left RUNNING. A backend that refuses the
    runner's credential (UNAUTHENTICATED, or PERMISSION_DENIED for a claim:
    a token bound to another --runner-id) stops it the same way, exit 1.
    """

    import asyncio
    import signal
    from datetime import timedelta

    from stigmer_backend.runner.worker import Worker

    worker = Worker(
        backend,
        runner_id=runner_id,
        concurrency=concurrency,
        agents=agents,
        lease=timedelta(seconds=lease),
        grace=grace,
        on_status=status,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    status(f"runner {worker.runner_id} started (concurrency {concurrency})")
    await worker.run()
    if worker.refused is not None:
        refused = worker.refused
        raise click.ClickException(
            f"the backend refuses runner {worker.runner_id}: {refused.status.name}: {refused.message}"
        )
    status(f"runner {worker.runner_id} stopped")


def _checked_runner_id(value: str | None) -> str | None:
    """Refused before the runner starts: every claim with it would be refused, one by one."""
    if value is None:
        return None
    if not value:
        raise click.BadParameter("must not be empty (leave the option out for HOSTNAME-PID)")
    from grpclib import GRPCError

    from stigmer_backend.backends.rules.validation import validate_runner_id

    try:
        validate_runner_id(value)
    except GRPCError as error:
        raise click.BadParameter(str(error.message).removeprefix("runner_id: ")) from None
    return value
