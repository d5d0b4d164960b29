"""Reports fit the contract's byte limits, so a long error never leaves an execution RUNNING."""

from __future__ import annotations

import pytest

from stigmer_backend.backends.rules.truncation import ELLIPSIS, truncate_utf8
from stigmer_backend.backends.rules.validation import MAX_ERROR_MESSAGE_BYTES
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner import steps
from tests.secrets.workload import RUNNER, agent_spec, apply_agent, file_source, running_execution


@pytest.mark.parametrize("char", ["a", "é", "€", "🙂"])
@pytest.mark.parametrize("limit", [1, 3, 4, 5, 16, 100])
def test_truncation_counts_bytes_and_never_splits_a_character(char, limit):
    text = char * 200
    cut = truncate_utf8(text, limit)
    assert len(cut.encode()) <= limit
    if cut:
        assert cut.endswith(ELLIPSIS) and text.startswith(cut.removesuffix(ELLIPSIS))
        assert len(cut.encode()) > limit - len(char.encode()) - len(ELLIPSIS.encode()), "cut more than needed"


def test_text_that_fits_is_kept_as_it_is():
    assert truncate_utf8("é" * 8, 16) == "é" * 8


async def test_an_error_message_of_20000_accented_characters_is_reported_failed(tmp_path):
    """Regression: 16,000 "é" are 32,000 bytes; the report was refused and the execution stayed RUNNING."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as backend:
        await apply_agent(backend, "agent", agent_spec())
        execution = await running_execution(backend, "agent")
        final = await steps.report(backend, execution.id, RUNNER, steps.failure("RUNNER_ERROR", "é" * 20_000))
    assert final.status.phase == pb.ExecutionPhase.FAILED
    message = final.status.error.message
    assert MAX_ERROR_MESSAGE_BYTES - 4 <= len(message.encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert message.endswith(ELLIPSIS)
