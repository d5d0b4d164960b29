"""``stigmer local``: the Tier 2 stack (Temporal dev server, ``stigmer server``, workers) on this machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ._output import status

if TYPE_CHECKING:
    from stigmer_backend.fullstack.stack import Part

__all__ = ["local"]


def _requirements() -> None:
    """Exits with one line naming the extra to install if Tier 2's dependencies are missing."""
    from stigmer_backend.fullstack.requirements import MissingExtra, require_sdk, temporal_binary

    try:
        require_sdk()
        temporal_binary()
    except MissingExtra as error:
        raise click.ClickException(str(error)) from None


@click.group()
def local() -> None:
    """Tier 2: run executions as Temporal workflows on a local Temporal server (no Docker).

    The stack's `stigmer server` serves the storage the CLI's context names
    (the local SQLite file unless configured otherwise; a remote context gets
    the local file). While the stack runs, `stigmer agent execute` on that
    storage starts each execution as a Temporal workflow
    (workflow id = execution id) that the stack's workers run; the backend
    served by the stack's `stigmer server` stays the system of record.
    """


@local.command("start")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes.")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Executions per worker at once."
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 86_400),
    default=30,
    show_default=True,
    help="On `stigmer local stop`, seconds running executions get to finish before they are cancelled.",
)
@click.option(
    "--give-up-after",
    type=click.IntRange(min=1),
    default=None,
    help="Quick failures in a row after which a part is no longer restarted  [default: 8]",
)
def start(workers: int, concurrency: int, grace: float, give_up_after: int | None) -> None:
    """Start the stack in the background and wait until every part is ready.

    Prints the Temporal UI address. Logs, pid files and Temporal's database
    are in $STIGMER_HOME/local/. A second start says it is already running.
    """
    _requirements()
    from stigmer_backend.fullstack.stack import StackError, start_stack

    from ._tier2 import served_storage

    storage = served_storage()
    try:
        stack = start_stack(
            workers=workers,
            concurrency=concurrency,
            grace=grace,
            backend=storage or "",
            give_up_after=give_up_after,
            on_status=status,
        )
    except StackError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Temporal:     {stack.temporal_address} (namespace {stack.namespace}, task queue {stack.task_queue})")
    click.echo(f"Temporal UI:  {stack.ui_address}")
    click.echo(f"backend:      {stack.server_endpoint} (stigmer server, {stack.backend or '$STIGMER_HOME/local.db'})")
    click.echo(f"workers:      {len(stack.workers)} x {concurrency}")
    if storage is None:
        status("note: the CLI's context is a remote backend (`stigmer context`): `stigmer logout` to use the stack")
    else:
        status("`stigmer agent execute` now runs executions as Temporal workflows; `stigmer local stop` ends it")


@local.command("stop")
def stop() -> None:
    """Stop every part gracefully (workers, server, Temporal); nothing is left running.

    Workers stop taking work; running executions get the --grace given to start,
    then are cancelled with a reason.
    """
    from stigmer_backend.fullstack.stack import StackError, stop_stack

    try:
        ran = stop_stack(on_status=status)
    except StackError as error:
        raise click.ClickException(str(error)) from None
    status("the local stack is stopped" if ran else "the local stack was not running")


@local.command("status")
def stack_status() -> None:
    """Each part's health and address: Temporal cluster health, the backend's Health RPC, workers alive.

    Also whether the supervisor runs, and each part's restarts and last exit.
    Exit code 0 when every part is healthy, 1 otherwise.
    """
    _requirements()
    from stigmer_backend.fullstack.stack import (
        FAILED,
        RESTARTING,
        STARTING,
        StackError,
        load_stack,
        temporal_health,
    )

    try:
        stack = load_stack()
    except StackError as error:
        raise click.ClickException(str(error)) from None
    if stack is None:
        raise click.ClickException("the local stack is not running (`stigmer local start`)")
    supervised = stack.supervisor is not None and stack.supervisor.alive()
    rows = []
    if stack.supervisor is not None:
        rows.append(("supervisor", stack.supervisor, "running" if supervised else "not running", ""))

    def health(part: Part, check: Callable[[], str]) -> str:
        if not supervised:
            return check() if part.alive() else "not running"
        if part.state == STARTING and part.alive():
            return "starting"  # not ready yet by the supervisor's own check
        if not part.alive():
            return {RESTARTING: "restarting", FAILED: "gave up"}.get(part.state, "not running")
        return check()

    temporal = stack.part("temporal")
    if temporal is not None:
        rows.append(
            (
                "temporal",
                temporal,
                health(temporal, lambda: temporal_health(stack)),
                f"{stack.temporal_address}  UI {stack.ui_address}",
            )
        )
    server = stack.part("server")
    if server is not None:
        rows.append(
            ("server", server, health(server, lambda: _backend_health(stack.server_endpoint)), stack.server_endpoint)
        )
    for worker in stack.workers:
        rows.append((worker.name, worker, health(worker, lambda: "alive"), stack.task_queue))
    healthy = True
    for name, part, state, where in rows:
        healthy &= state in ("SERVING", "alive", "running")
        line = f"{name:<10} pid {part.pid:<8} {state:<12} {where}"
        if part.restarts or part.last_exit:
            line += f"  restarts {part.restarts}, last exit: {part.last_exit or 'none'}"
        if part.note and part.state in (RESTARTING, FAILED) and supervised:
            line += f" ({part.note})"
        click.echo(line.rstrip())
    if not supervised:
        status(
            "the supervisor is not running: nothing restarts the parts, which exit with it; "
            "`stigmer local stop`, then `stigmer local start`"
        )
    if not healthy:
        raise SystemExit(1)


def _backend_health(endpoint: str) -> str:
    """The backend's ``grpc.health.v1.Health`` answer for the whole server (no token needed)."""
    import asyncio

    from grpclib.client import Channel
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    from stigmer_backend.backends.wire import parse_endpoint

    async def check() -> str:
        host, port = parse_endpoint(endpoint)
        channel = Channel(host, port)
        try:
            response = await asyncio.wait_for(HealthStub(channel).Check(HealthCheckRequest()), 10)
            return HealthCheckResponse.ServingStatus.Name(response.status)
        except (OSError, TimeoutError) as error:
            return f"unreachable ({type(error).__name__})"
        finally:
            channel.close()

    return asyncio.run(check())


@local.command("logs")
@click.argument("part", required=False)
@click.option("-n", "--lines", type=click.IntRange(1), default=40, show_default=True, help="Last lines of each log.")
def logs(part: str | None, lines: int) -> None:
    """Show the last lines of each part's log (or of PART: temporal, server, worker-1, ...)."""
    from collections import deque
    from pathlib import Path

    from stigmer_backend.fullstack.stack import stack_dir

    found = sorted(stack_dir().glob("*.log"))
    if part is not None:
        found = [log for log in found if log.stem == part]
        if not found:
            known = ", ".join(log.stem for log in sorted(stack_dir().glob("*.log"))) or "none yet"
            raise click.ClickException(f"no log for {part!r} (known: {known})")
    for log in found:
        click.echo(f"==> {log} <==")
        with Path(log).open(errors="replace") as file:
            for line in deque(file, maxlen=lines):
                click.echo(line, nl=False)


@local.command("supervise", hidden=True)
@click.option("--workers", type=click.IntRange(1, 64), required=True)
@click.option("--concurrency", type=click.IntRange(1), required=True)
@click.option("--grace", type=click.FloatRange(0), required=True)
@click.option("--backend", default="", help="The storage to serve (`Stack.backend`); empty for local.db.")
@click.option("--report-fd", type=int, default=None, help="A pipe to `stigmer local start`: progress, then ready.")
@click.option("--give-up-after", type=click.IntRange(1), default=None)
def supervise(
    workers: int, concurrency: int, grace: float, backend: str, report_fd: int | None, give_up_after: int | None
) -> None:
    """The stack's supervisor (started by `stigmer local start`): starts, restarts and stops the parts."""
    from stigmer_backend.fullstack.supervisor import MAX_QUICK_FAILURES
    from stigmer_backend.fullstack.supervisor import supervise as run

    raise SystemExit(
        run(
            workers=workers,
            concurrency=concurrency,
            grace=grace,
            backend=backend,
            report_fd=report_fd,
            give_up_after=give_up_after or MAX_QUICK_FAILURES,
        )
    )


@local.command("worker", hidden=True)
@click.option("--temporal", "temporal_address", required=True, help="HOST:PORT of the Temporal frontend.")
@click.option("--endpoint", required=True, help="HOST:PORT of the stack's `stigmer server`.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--task-queue", required=True)
@click.option("--runner-id", required=True, help="Prefix of this worker's runner id (the pid is appended).")
@click.option("--concurrency", type=click.IntRange(1), default=8)
@click.option("--grace", type=click.FloatRange(0), default=30.0)
def worker(
    temporal_address: str,
    endpoint: str,
    token_file: str,
    task_queue: str,
    runner_id: str,
    concurrency: int,
    grace: float,
) -> None:
    """A Temporal worker of the stack (started by `stigmer local start`)."""
    import os
    import sys
    from pathlib import Path

    from ._runtime import run

    _requirements()

    async def main() -> None:
        from stigmer_backend.backends.cloud import CloudBackend
        from stigmer_backend.fullstack.worker import serve

        token = Path(token_file).read_text().strip()
        async with CloudBackend(endpoint, token=token) as backend:
            await serve(
                backend,
                temporal_address,
                runner_id=f"{runner_id}-{os.getpid()}",
                task_queue=task_queue,
                concurrency=concurrency,
                grace=grace,
                on_status=status,
            )

    run(main)
    # The Temporal SDK's native threads can outlive the interpreter's finalisation and abort it
    # ("PyGILState_Release"); the worker has stopped cleanly by now, so leave without finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
