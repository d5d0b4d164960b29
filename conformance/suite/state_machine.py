"""`UpdateExecutionStatus` and `CancelExecution`: the `ExecutionPhase` state machine and compare-and-set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status
from stigmer_backend.conformance.scenarios import (
    OTHER_RUNNER,
    RUNNER,
    claim,
    create_execution,
    create_time,
    end_time,
    execution_in,
    execution_of,
    lease_end,
    move,
    start_time,
    status,
    update_time,
)
from stigmer_backend.conformance.tables import TERMINAL, TRANSITION_CASES
from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase


class TestUpdateExecutionStatus:
    @pytest.mark.parametrize(
        ("start", "to", "legal"), [c[:3] for c in TRANSITION_CASES], ids=[c[3] for c in TRANSITION_CASES]
    )
    def test_transition(self, client: Client, start: pb.ExecutionPhase, to: pb.ExecutionPhase, legal: bool) -> None:
        """Every pair of phases: the six transitions of `ExecutionPhase` are accepted, all others FAILED_PRECONDITION."""
        execution = execution_in(client, start)
        if legal:
            updated = move(client, execution, to)
            assert status(updated).phase == to
            assert updated.version == execution.version + 1
            assert client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution == updated
        else:
            with expect_status(Status.FAILED_PRECONDITION):
                move(client, execution, to)
            after = execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)))
            assert (status(after).phase, after.version) == (start, execution.version), "a rejected update wrote"

    @pytest.mark.parametrize("terminal", sorted(TERMINAL), ids=lambda p: p.name)
    def test_repeating_a_terminal_update_fails_with_failed_precondition(
        self, client: Client, terminal: pb.ExecutionPhase
    ) -> None:
        """Terminal phases are final: even the same terminal update again is FAILED_PRECONDITION."""
        done = move(client, execution_in(client, Phase.RUNNING), terminal)
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, done, terminal)

    def test_claim_records_runner_lease_and_start_time(self, client: Client) -> None:
        """The claim (`PENDING -> RUNNING`) records `runner_id`, sets `start_time` and `lease_expire_time`."""
        execution = create_execution(client)
        running = claim(client, execution, lease=timedelta(seconds=120))
        recorded = status(running)
        assert recorded.runner_id == RUNNER
        assert recorded.start_time is not None and recorded.end_time is None
        assert recorded.lease_expire_time is not None
        lease = lease_end(running) - update_time(running)
        assert timedelta(seconds=110) <= lease <= timedelta(seconds=130), lease

    def test_unset_lease_duration_means_60_seconds(self, client: Client) -> None:
        """`lease_duration` unset means 60 seconds."""
        running = claim(client, create_execution(client))
        lease = lease_end(running) - update_time(running)
        assert timedelta(seconds=55) <= lease <= timedelta(seconds=65), lease

    def test_renewal_extends_the_lease(self, client: Client) -> None:
        """`RUNNING -> RUNNING` by the holder extends the lease to now + `lease_duration`."""
        running = claim(client, create_execution(client), lease=timedelta(seconds=30))
        renewed = move(client, running, Phase.RUNNING, lease_duration=timedelta(seconds=600))
        assert lease_end(renewed) > lease_end(running) + timedelta(seconds=500)
        assert status(renewed).start_time == status(running).start_time

    def test_only_the_lease_holder_may_update_a_running_execution(self, client: Client) -> None:
        """A `RUNNING` execution under another `runner_id` is FAILED_PRECONDITION, nothing written."""
        running = claim(client, create_execution(client))
        for to in (Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED):
            with expect_status(Status.FAILED_PRECONDITION):
                move(client, running, to, runner=OTHER_RUNNER)
        assert (
            execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=running.id))).version
            == running.version
        )

    def test_wrong_expected_version_is_aborted_and_writes_nothing(self, client: Client) -> None:
        """`expected_version` not equal to `version`: ABORTED, nothing written."""
        execution = create_execution(client)
        with expect_status(Status.ABORTED):
            move(client, execution, Phase.RUNNING, expected_version=execution.version + 5)
        after = client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution
        assert after == execution

    def test_version_check_comes_before_transition_check(self, client: Client) -> None:
        """Several failures: ABORTED comes before FAILED_PRECONDITION."""
        done = execution_in(client, Phase.SUCCEEDED)
        with expect_status(Status.ABORTED):
            move(client, done, Phase.RUNNING, expected_version=done.version - 1)

    def test_right_expected_version_succeeds(self, client: Client) -> None:
        """`expected_version` equal to `version`: the update happens."""
        running = claim(client, create_execution(client))
        done = move(client, running, Phase.SUCCEEDED, expected_version=running.version)
        assert status(done).phase == Phase.SUCCEEDED

    def test_terminal_update_ends_the_lease_and_sets_end_time(self, client: Client) -> None:
        """A terminal phase ends the lease (`lease_expire_time` unset) and sets `end_time`."""
        running = claim(client, create_execution(client))
        done = move(client, running, Phase.SUCCEEDED)
        assert status(done).lease_expire_time is None
        assert end_time(done) >= start_time(done)
        assert status(done).runner_id == RUNNER

    def test_message_is_replaced_and_output_kept_until_replaced(self, client: Client) -> None:
        """`message` replaces (empty clears); `output` replaces only when set."""
        running = claim(client, create_execution(client))
        first = pb.ExecutionOutput(text="partial", data=Struct.from_dict({"step": 1}))
        progress = move(client, running, Phase.RUNNING, message="thinking", output=first)
        assert (status(progress).message, status(progress).output) == ("thinking", first)
        quiet = move(client, progress, Phase.RUNNING)
        assert status(quiet).message == "" and status(quiet).output == first
        final = pb.ExecutionOutput(text="done")
        done = move(client, quiet, Phase.SUCCEEDED, output=final, message="finished")
        assert (status(done).message, status(done).output) == ("finished", final)

    def test_failure_error_is_stored(self, client: Client) -> None:
        """`error` with `EXECUTION_PHASE_FAILED` is stored as `ExecutionStatus.error`."""
        running = claim(client, create_execution(client))
        error = pb.ExecutionError(code="MODEL_TIMEOUT", message="no answer in 60s", details={"provider": "ollama"})
        failed = move(client, running, Phase.FAILED, error=error)
        assert status(failed).error == error
        stored = execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=running.id)))
        assert status(stored).error == error

    def test_every_write_increments_version_by_one(self, client: Client) -> None:
        """`Execution.version`: 1 at creation, +1 on every write."""
        execution = create_execution(client)
        assert execution.version == 1
        running = claim(client, execution)
        renewed = move(client, running, Phase.RUNNING)
        done = move(client, renewed, Phase.SUCCEEDED)
        assert [running.version, renewed.version, done.version] == [2, 3, 4]
        assert update_time(done) >= update_time(renewed) >= update_time(running) >= create_time(execution)


class TestCancelExecution:
    @pytest.mark.parametrize("phase", [Phase.PENDING, Phase.RUNNING], ids=lambda p: p.name)
    def test_cancels_a_live_execution(self, client: Client, phase: pb.ExecutionPhase) -> None:
        """`PENDING` or `RUNNING` -> `CANCELLED`, `reason` stored as the message, lease ended."""
        execution = execution_in(client, phase)
        request = pb.CancelExecutionRequest(execution_id=execution.id, reason="user pressed ctrl-c")
        cancelled = execution_of(client.cancel_execution(request))
        assert status(cancelled).phase == Phase.CANCELLED
        assert status(cancelled).message == "user pressed ctrl-c"
        assert status(cancelled).lease_expire_time is None and status(cancelled).end_time is not None
        assert cancelled.version == execution.version + 1

    @pytest.mark.parametrize("phase", sorted(TERMINAL), ids=lambda p: p.name)
    def test_a_terminal_execution_cannot_be_cancelled(self, client: Client, phase: pb.ExecutionPhase) -> None:
        """Already terminal: FAILED_PRECONDITION."""
        execution = execution_in(client, phase)
        with expect_status(Status.FAILED_PRECONDITION):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id))

    def test_wrong_expected_version_is_aborted(self, client: Client) -> None:
        """`expected_version` mismatch: ABORTED, nothing written."""
        execution = create_execution(client)
        with expect_status(Status.ABORTED):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id, expected_version=7))
        assert client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution == execution

    def test_runner_learns_of_cancellation_from_its_next_update(self, client: Client) -> None:
        """The cancelled runner's next update fails with FAILED_PRECONDITION."""
        running = claim(client, create_execution(client))
        client.cancel_execution(pb.CancelExecutionRequest(execution_id=running.id))
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, running, Phase.SUCCEEDED)

    def test_unknown_execution_is_not_found(self, client: Client) -> None:
        """No such execution: NOT_FOUND."""
        with expect_status(Status.NOT_FOUND):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id="exe_does_not_exist"))
