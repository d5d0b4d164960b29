"""Runner liveness: an expired lease fails the execution (`LEASE_EXPIRED`), never silently."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id
from stigmer_backend.conformance.scenarios import (
    RUNNER,
    apply_agent,
    claim,
    create_execution,
    execution_of,
    lease_end,
    move,
    status,
    update_time,
    wait_for_backend_clock,
)
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
SHORT = timedelta(seconds=1)
_INPUT = pb.ExecutionInput(message="lease")


def _get(client: Client, execution_id: str) -> pb.Execution:
    return execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=execution_id)))


def _poll_until_not_running(
    client: Client, running: pb.Execution, grace: timedelta = timedelta(seconds=4)
) -> pb.Execution:
    """Polls until the execution leaves RUNNING; it must by its lease instant plus ``grace`` (clock skew)."""
    deadline = lease_end(running) + grace
    while True:
        execution = _get(client, running.id)
        if status(execution).phase != Phase.RUNNING:
            return execution
        assert datetime.now(UTC) < deadline, f"execution {running.id} stayed RUNNING {grace} after its lease ended"
        time.sleep(0.05)


class TestLeaseExpiry:
    def test_an_expired_lease_fails_the_execution(self, client: Client) -> None:
        """After `lease_expire_time`: `EXECUTION_PHASE_FAILED`, `error.code` LEASE_EXPIRED, one more version;
        the runner, start time and last output are kept."""
        claimed = claim(client, create_execution(client), lease=SHORT)
        output = pb.ExecutionOutput(text="half done")
        running = move(client, claimed, Phase.RUNNING, output=output, lease_duration=SHORT)
        failed = _poll_until_not_running(client, running)
        assert status(failed).phase == Phase.FAILED
        error = status(failed).error
        assert error is not None and error.code == "LEASE_EXPIRED"
        assert failed.version == running.version + 1
        assert status(failed).end_time == status(running).lease_expire_time
        assert status(failed).lease_expire_time is None and status(failed).runner_id == status(running).runner_id
        assert status(failed).output == output and status(failed).start_time == status(running).start_time

    def test_the_late_runner_cannot_finish_or_renew(self, client: Client) -> None:
        """The runner whose lease expired gets FAILED_PRECONDITION (or ABORTED with its old version)."""
        running = claim(client, create_execution(client), lease=SHORT)
        _poll_until_not_running(client, running)
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, running, Phase.SUCCEEDED)
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, running, Phase.RUNNING)
        with expect_status(Status.ABORTED):
            move(client, running, Phase.SUCCEEDED, expected_version=running.version)

    def test_a_renewed_lease_does_not_expire(self, client: Client) -> None:
        """Renewing before expiry keeps the execution RUNNING past the first lease."""
        running = claim(client, create_execution(client), lease=SHORT)
        first_expiry = lease_end(running)
        move(client, running, Phase.RUNNING, lease_duration=timedelta(seconds=60))
        wait_for_backend_clock(client, first_expiry)
        assert status(_get(client, running.id)).phase == Phase.RUNNING

    def test_the_expiry_is_delivered_to_a_watcher(self, client: Client) -> None:
        """`WatchExecution` delivers the expiry and ends."""
        running = claim(client, create_execution(client), lease=SHORT)
        watch = client.watch(running.id)
        states = watch.finish(timeout=15)
        last = status(states[-1])
        assert last.phase == Phase.FAILED and last.error is not None and last.error.code == "LEASE_EXPIRED"
        assert states[-1].version == running.version + 1


class TestLeaseTimeliness:
    def test_no_response_shows_an_expired_lease_as_running(self, client: Client) -> None:
        """Once the backend's clock passed `lease_expire_time`, the next request of any kind sees the expiry.

        One execution per kind of request, so each is the first to touch its execution after expiry.
        """
        paths = ["get", "list", "watch", "create-retry", "renew", "cancel", "context"]
        runs: dict[str, tuple[pb.AgentInstance, str, pb.Execution]] = {}
        for path in paths:
            agent = apply_agent(client)
            rid = request_id()
            created = execution_of(
                client.create_execution(
                    pb.CreateExecutionRequest(
                        request_id=rid, agent_instance=pb.AgentInstanceRef(id=agent.id), input=_INPUT
                    )
                )
            )
            runs[path] = (agent, rid, claim(client, created, lease=SHORT))
        latest = max(lease_end(running) for _, _, running in runs.values())
        wait_for_backend_clock(client, latest)
        clause = "no response ever shows an execution EXECUTION_PHASE_RUNNING with a lease_expire_time in the past"

        def check(seen: pb.Execution, path: str) -> None:
            assert status(seen).phase == Phase.FAILED, (
                f"{path}: {Phase(status(seen).phase).name} after expiry; {clause}"
            )

        agent, _, running = runs["get"]
        check(_get(client, running.id), "GetExecution")
        agent, _, running = runs["list"]
        listed = client.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id)).executions
        assert [e.id for e in listed] == [running.id], "ListExecutions left out the execution whose lease expired"
        check(listed[0], "ListExecutions")
        agent, _, running = runs["watch"]
        watch = client.watch(running.id)
        assert watch.wait_until(lambda w: len(w.states) >= 1 or w.done), "WatchExecution sent nothing"
        check(watch.finish()[0], "WatchExecution (first message)")
        agent, rid, running = runs["create-retry"]
        again = client.create_execution(
            pb.CreateExecutionRequest(request_id=rid, agent_instance=pb.AgentInstanceRef(id=agent.id), input=_INPUT)
        )
        check(execution_of(again), "CreateExecution (retry)")
        agent, _, running = runs["renew"]
        with expect_status(Status.FAILED_PRECONDITION):
            move(client, running, Phase.RUNNING)
        agent, _, running = runs["cancel"]
        with expect_status(Status.FAILED_PRECONDITION):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=running.id))
        agent, _, running = runs["context"]
        with expect_status(Status.FAILED_PRECONDITION):
            client.get_execution_context(pb.GetExecutionContextRequest(execution_id=running.id, runner_id=RUNNER))
        for _, _, running in runs.values():
            check(_get(client, running.id), "GetExecution")

    @pytest.mark.parametrize("seconds", [None, 1, 600, 86_400], ids=["unset-60s", "1s", "600s", "24h"])
    def test_a_renewal_extends_the_lease_to_now_plus_lease_duration(self, client: Client, seconds: int | None) -> None:
        """`RUNNING -> RUNNING`: `lease_expire_time` = the write's time + `lease_duration` (unset: 60 s)."""
        running = claim(client, create_execution(client), lease=timedelta(seconds=30))
        duration = None if seconds is None else timedelta(seconds=seconds)
        renewed = move(client, running, Phase.RUNNING, lease_duration=duration)
        granted = lease_end(renewed) - update_time(renewed)
        wanted = duration or timedelta(seconds=60)
        assert abs(granted - wanted) <= timedelta(seconds=1), f"renewed for {granted}, not now + {wanted}"
