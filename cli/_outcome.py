"""How a command that waits for an execution ends: one exit code per way it can end.

``agent execute`` and ``execution watch`` share these, so a script can tell
the outcomes apart without parsing text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_CODES_HELP",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_TIMEOUT",
    "ExecutionEnded",
    "check_ended",
]

EXIT_FAILED = 3
EXIT_CANCELLED = 4
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM

EXIT_CODES_HELP = (
    "Exit codes: 0 SUCCEEDED; 1 an error before the execution ran (unknown agent, backend unreachable); "
    f"2 bad invocation; {EXIT_FAILED} FAILED; {EXIT_CANCELLED} CANCELLED (by `stigmer execution cancel` or else); "
    f"{EXIT_TIMEOUT} --timeout reached (the execution is cancelled); {EXIT_INTERRUPTED} Ctrl-C "
    f"and {EXIT_TERMINATED} SIGTERM (the execution is cancelled)."
)


class ExecutionEnded(click.ClickException):
    """An execution that did not succeed: one line on stderr, and the exit code of how it ended."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click types exit_code as a ClassVar, yet reads it from the instance it caught
        self.exit_code = exit_code  # type: ignore[misc]


def check_ended(final: pb.Execution) -> None:
    """Raises ``ExecutionEnded`` unless ``final`` (an ``Execution``) SUCCEEDED."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    state = final.status or pb.ExecutionStatus()
    phase = state.phase
    if phase == pb.ExecutionPhase.SUCCEEDED:
        return
    error = state.error
    detail = f"{error.code}: {error.message}" if error else state.message
    code = EXIT_CANCELLED if phase == pb.ExecutionPhase.CANCELLED else EXIT_FAILED
    from ._output import for_terminal

    raise ExecutionEnded(for_terminal(f"execution {final.id} {phase.name}: {detail}", err=True), code)
