"""Runner liveness: an expired lease fails the execution (`LEASE_EXPIRED`), never silently."""

import time
from datetime import UTC, datetime, timedelta

from grpclib.const import Status

from stigmer.conformance.client import expect_status
from stigmer.conformance.scenarios import claim, create_execution, lease_end, move
from stigmer.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
SHORT = timedelta(seconds=1)


def _get(client, execution_id):
    return client.get_execution(pb.GetExecutionRequest(execution_id=execution_id)).execution


def _poll_until_not_running(client, running, grace=timedelta(seconds=4)):
    """Polls until the execution leaves RUNNING; it must by its lease instant plus ``grace`` (clock skew)."""
    deadline = lease_end(running) + grace
    while True:
        execution = _get(client, running.id)
        if execution.status.phase != Phase.RUNNING:
            return execution
        assert datetime.now(UTC) < deadline, f"execution {running.id} stayed RUNNING {grace} after its lease ended"
        time.sleep(0.05)


class TestLeaseExpiry:
    def test_an_expired_lease_fails_the_execution(self, client):
        """After `lease_expire_time`: `EXECUTION_PHASE_FAILED`, `error.code` LEASE_EXPIRED, one more version."""
        running = claim(client, create_execution(client), lease=SHORT)
        failed = _poll_until_not_running(client, running)
        assert failed.status.phase == Phase.FAILED
        assert failed.status.error is not None and failed.status.error.code == "LEASE_EXPIRED"
        assert failed.version == running.version + 1
        assert failed.status.end_time == running.status.lease_expire_time
        assert failed.status.lease_expire_time is None and failed.status.runner_id == running.status.runner_id

    def test_the_late_runner_cannot_finish_or_renew(self, client):
        """The runner whose lease expired gets FAILED_PRECONDITION (or ABORTED with its old version)."""
        running = claim(client, create_execution(client), lease=SHORT)
        _poll_until_not_running(client, running)
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, running, Phase.SUCCEEDED)
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, running, Phase.RUNNING)
        with expect_status(Status.ABORTED):
            move(client, running, Phase.SUCCEEDED, expected_version=running.version)

    def test_a_renewed_lease_does_not_expire(self, client):
        """Renewing before expiry keeps the execution RUNNING past the first lease."""
        running = claim(client, create_execution(client), lease=SHORT)
        first_expiry = lease_end(running)
        move(client, running, Phase.RUNNING, lease_duration=timedelta(seconds=60))
        deadline = time.monotonic() + 15
        while not _backend_clock_passed(client, first_expiry):
            assert time.monotonic() < deadline, "the backend clock never passed the first lease"
            time.sleep(0.1)
        assert _get(client, running.id).status.phase == Phase.RUNNING

    def test_the_expiry_is_delivered_to_a_watcher(self, client):
        """`WatchExecution` delivers the expiry and ends."""
        running = claim(client, create_execution(client), lease=SHORT)
        watch = client.watch(running.id)
        states = watch.finish(timeout=15)
        assert states[-1].status.phase == Phase.FAILED and states[-1].status.error.code == "LEASE_EXPIRED"
        assert states[-1].version == running.version + 1


def _backend_clock_passed(client, instant):
    """Whether the backend's clock is past ``instant``, read from the time of a throwaway write."""
    probe = create_execution(client)
    cancelled = client.cancel_execution(pb.CancelExecutionRequest(execution_id=probe.id)).execution
    return cancelled.update_time > instant
