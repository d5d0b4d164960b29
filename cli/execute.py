"""``stigmer agent execute``: create an execution and run it in this process, or leave it to runners."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ._completion import agent_names
from ._outcome import EXIT_CODES_HELP, EXIT_TERMINATED, EXIT_TIMEOUT, ExecutionEnded, check_ended
from ._output import emit, for_terminal, output_option, status
from ._runtime import open_backend, run
from ._tier2 import active_stack, cancel_workflow

if TYPE_CHECKING:
    from stigmer_backend.fullstack.stack import Stack
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["execute"]


@click.command("execute", epilog=EXIT_CODES_HELP)
@click.argument("name", shell_complete=agent_names)
@click.argument("message")
@click.option("--data", help="Structured input: a JSON object.")
@click.option(
    "--detach",
    is_flag=True,
    help="Only create the execution (PENDING), print its id and leave it to `stigmer runner start` processes.",
)
@click.option("--lease", type=click.IntRange(5, 3600), default=30, show_default=True, help="Lease in seconds.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    help="Give up after this many seconds: the execution is cancelled (exit 124).",
)
@output_option
def execute(
    name: str, message: str, data: str | None, detach: bool, lease: int, timeout: float | None, output: str
) -> None:
    """Run an agent instance on MESSAGE, here and now (CreateExecution, then run it).

    The answer streams to stdout as the model writes it (masked: no secret
    value is ever shown); -o json prints the whole final execution instead.
    Ctrl-C cancels the execution and aborts the model call at once. The model
    call is retried on 429/5xx and connection errors within the agent's time
    limit: its spec.env entry STIGMER_MODEL_TIMEOUT (seconds, default 300).

    This process is the runner unless --detach is given: runners are not
    registered anywhere, so the CLI cannot know whether one is serving this
    backend, and asks you to say so. With --detach, a `stigmer runner start`
    against the same backend (this machine or any other) claims the execution;
    follow it with `stigmer execution watch ID`.
    """
    structured = _parse_data(data)

    async def main() -> pb.Execution | None:
        import asyncio
        import contextlib
        import signal
        import uuid
        from datetime import timedelta

        from grpclib import GRPCError
        from grpclib.const import Status

        from stigmer_backend.gen.google.protobuf import Struct
        from stigmer_backend.gen.stigmer.backend import v1 as pb
        from stigmer_backend.runner.executor import run_execution

        from ._agent_refs import agent_ref

        request = pb.CreateExecutionRequest(
            request_id=str(uuid.uuid4()),
            agent_instance=agent_ref(name),
            input=pb.ExecutionInput(message=message, data=None if structured is None else Struct.from_dict(structured)),
        )
        stack = active_stack()
        async with open_backend() as backend:
            execution = (await backend.create_execution(request)).execution
            assert execution is not None  # CreateExecution answers with it or fails
            if stack is not None:
                await _start_workflow(backend, stack, execution.id, lease)
            if detach:
                click.echo(execution.id)
                if stack is not None:
                    status(f"execution {execution.id} runs as a Temporal workflow (same id; UI {stack.ui_address})")
                else:
                    status(f"execution {execution.id} is PENDING: a `stigmer runner start` on this backend will run it")
                return None
            screen = _Screen(enabled=output == "table")
            limit = asyncio.timeout(timeout)
            stopped_by = ["interrupted (Ctrl-C)"]

            main_task = asyncio.current_task()
            assert main_task is not None  # main runs as asyncio.run's task

            def terminate() -> None:
                stopped_by[0] = "terminated (SIGTERM)"
                main_task.cancel()

            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)

            def cancel_reason() -> str:
                if limit.expired():
                    return f"timed out after {timeout:g} s (--timeout of `stigmer agent execute`)"
                return f"{stopped_by[0]} in `stigmer agent execute`"

            claimed: list[bool] = []

            def on_status(line: str) -> None:
                claimed.append(True)
                screen.end()  # the answer's last line is ended before a status line shares the terminal
                status(line)

            try:
                async with limit:
                    try:
                        if stack is not None:  # Tier 2: a worker of the stack runs it
                            status(f"{execution.id}: running as a Temporal workflow (UI {stack.ui_address})")
                            final = await _followed(backend, execution.id)
                        else:
                            final = await run_execution(
                                backend,
                                execution,
                                lease=timedelta(seconds=lease),
                                on_status=on_status,
                                on_text=screen,
                                cancel_reason=cancel_reason,
                            )
                    except GRPCError as error:
                        lost = error.status in (Status.ABORTED, Status.FAILED_PRECONDITION)
                        if claimed or not lost:
                            raise
                        # A `stigmer runner start` on this backend claimed it between our create and claim.
                        status(f"{execution.id}: claimed by a runner; following it")
                        final = await _followed(backend, execution.id)
            except (asyncio.CancelledError, TimeoutError):
                # Stopped before the claim, the execution is still PENDING: a runner must not pick it up later.
                # (After the claim, run_execution has cancelled it already, and this is refused.)
                cancel = pb.CancelExecutionRequest(execution_id=execution.id, reason=cancel_reason())
                with contextlib.suppress(GRPCError):
                    await asyncio.shield(backend.cancel_execution(cancel))
                if stack is not None:
                    with contextlib.suppress(Exception):  # the backend's CANCELLED stands; the workflow follows it
                        await asyncio.shield(cancel_workflow(stack, execution.id))
                if not limit.expired():
                    screen.end()  # the answer's last line is ended first: both share the terminal
                    status(f"execution {execution.id} cancelled: {cancel_reason()}")
                    raise
                raise ExecutionEnded(
                    f"execution {execution.id} timed out after {timeout:g} s and was cancelled", EXIT_TIMEOUT
                ) from None
            finally:
                screen.end()
            if output == "table" and not screen.ever and final.status is not None and final.status.output:
                click.echo(for_terminal(final.status.output.text))  # run elsewhere: nothing streamed here
            return final

    import asyncio

    try:
        final = run(main)
    except asyncio.CancelledError:  # SIGTERM
        status("terminated")
        raise SystemExit(EXIT_TERMINATED) from None
    if final is not None:
        _show_result(final, output)


class _Screen:
    """Prints the streamed answer as it comes (already masked), and ends it with a newline."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False
        self.ever = False
        self._last = ""

    def __call__(self, text: str) -> None:
        if self.enabled and text:
            click.echo(for_terminal(text), nl=False)
            self.shown = self.ever = True
            self._last = text
            sys.stdout.flush()

    def end(self) -> None:
        if self.shown and not self._last.endswith("\n"):
            click.echo()
        self.shown = False


async def _start_workflow(backend: pb.BackendServiceBase, stack: Stack, execution_id: str, lease: int) -> None:
    """Starts the execution's Temporal workflow; if Temporal refuses, the execution is cancelled, not left PENDING."""
    from stigmer_backend.fullstack.client import start_workflow
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    try:
        await start_workflow(stack, execution_id, lease)
    except Exception as error:
        reason = f"Temporal did not start its workflow: {type(error).__name__}"
        await backend.cancel_execution(pb.CancelExecutionRequest(execution_id=execution_id, reason=reason))
        raise click.ClickException(
            f"UNAVAILABLE: {reason} (`stigmer local status`); execution {execution_id} was cancelled"
        ) from None


async def _followed(backend: pb.BackendServiceBase, execution_id: str) -> pb.Execution:
    """The execution once it ends, followed with WatchExecution."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    final = None
    async for response in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
        final = response.execution
    assert final is not None  # the stream starts with the execution as it is, and ends with its last state
    return final


def _parse_data(data: str | None) -> dict[str, Any] | None:
    if data is None:
        return None
    import json

    try:
        parsed = json.loads(data)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from None
    except RecursionError:  # json's decoder recurses per level, far past the contract's depth limit
        raise click.BadParameter("nested too deeply to be read as JSON", param_hint="--data") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    return parsed


def _show_result(final: pb.Execution, output: str) -> None:
    if output != "table":
        emit(output, final, [])
    check_ended(final)
