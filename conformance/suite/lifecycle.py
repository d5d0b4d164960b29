"""Identity and time over a resource's life: `update_time`, identifiers after delete and re-apply, what a
terminal transition keeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id
from stigmer_backend.conformance.scenarios import (
    RUNNER,
    agent_of,
    apply_agent,
    claim,
    create_execution,
    create_time,
    end_time,
    execution_of,
    move,
    spec,
    start_time,
    status,
    update_time,
    wait_for_backend_clock,
)
from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase


def _by_id(agent_id: str) -> pb.AgentInstanceRef:
    return pb.AgentInstanceRef(id=agent_id)


class TestAgentInstanceTimes:
    def test_update_time_moves_only_when_the_spec_changes(self, client: Client) -> None:
        """`update_time` is when `spec` last changed: kept by an unchanged apply, moved by a changing one."""
        agent = apply_agent(client)
        wait_for_backend_clock(client, update_time(agent))
        unchanged = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=agent.spec))
        assert agent_of(unchanged).update_time == agent.update_time, "an unchanged apply moved update_time"
        changed = agent_of(
            client.apply_agent_instance(
                pb.ApplyAgentInstanceRequest(name=agent.name, spec=spec(instructions="changed"))
            )
        )
        assert update_time(changed) > update_time(agent), "a changing apply did not move update_time"
        assert changed.create_time == agent.create_time, "create_time is when the name was first applied"


class TestIdentityAfterDelete:
    def test_the_old_identifier_stops_resolving(self, client: Client) -> None:
        """Deleted and applied again: a new id; the old one names nothing (get, delete, create)."""
        agent = apply_agent(client)
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_by_id(agent.id)))
        again = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=agent.spec))
        assert again.outcome == pb.ApplyOutcome.CREATED and agent_of(again).id != agent.id
        with expect_status(Status.NOT_FOUND):
            client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=_by_id(agent.id)))
        with expect_status(Status.NOT_FOUND):
            client.create_execution(
                pb.CreateExecutionRequest(
                    request_id=request_id(), agent_instance=_by_id(agent.id), input=pb.ExecutionInput(message="m")
                )
            )
        with expect_status(Status.NOT_FOUND):
            client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_by_id(agent.id)))
        current = client.get_agent_instance(
            pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=agent.name))
        )
        assert current.agent_instance == again.agent_instance, "deleting by the old id touched the new agent instance"

    def test_executions_keep_the_deleted_agent_instance(self, client: Client) -> None:
        """An execution keeps `agent_instance_id` and `agent_instance_name` of the agent instance it was created for."""
        agent = apply_agent(client)
        execution = create_execution(client, agent)
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_by_id(agent.id)))
        apply_agent(client, spec(instructions="the new one"), name=agent.name)
        kept = execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)))
        assert (kept.agent_instance_id, kept.agent_instance_name) == (agent.id, agent.name)
        listed = client.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id)).executions
        assert [e.id for e in listed] == [execution.id]


OUTPUT = pb.ExecutionOutput(text="partial answer", data=Struct.from_dict({"step": 2}))


def _cancel(client: Client, execution: pb.Execution) -> pb.Execution:
    request = pb.CancelExecutionRequest(execution_id=execution.id, reason="stop")
    return execution_of(client.cancel_execution(request))


ENDINGS: dict[str, Callable[[Client, pb.Execution], pb.Execution]] = {
    "SUCCEEDED": lambda c, e: move(c, e, Phase.SUCCEEDED, message="done"),
    "FAILED": lambda c, e: move(c, e, Phase.FAILED, message="gave up"),
    "CANCELLED": _cancel,
}


class TestTerminalTransitions:
    @pytest.mark.parametrize("ending", list(ENDINGS))
    def test_a_terminal_transition_keeps_what_it_does_not_replace(self, client: Client, ending: str) -> None:
        """Identity, input, `runner_id`, `start_time` and the last output are kept; the lease ends, `end_time` set."""
        running = claim(client, create_execution(client, message="keep me"), lease=timedelta(seconds=120))
        progress = move(client, running, Phase.RUNNING, output=OUTPUT, lease_duration=timedelta(seconds=120))
        done = ENDINGS[ending](client, progress)
        _check_kept(progress, done)
        assert status(done).output == OUTPUT, "an ending that carries no output keeps the stored output"
        assert end_time(done) >= start_time(done)
        assert (status(done).error is not None) == (ending == "FAILED"), "error is set exactly when FAILED"
        assert client.get_execution(pb.GetExecutionRequest(execution_id=done.id)).execution == done

    def test_a_cancelled_pending_execution_has_no_runner(self, client: Client) -> None:
        """Cancelled before any claim: `runner_id` empty, `start_time` unset, `end_time` set."""
        pending = create_execution(client)
        cancelled = _cancel(client, pending)
        _check_kept(pending, cancelled)
        assert status(pending).runner_id == "" and status(pending).output is None, "nothing reported yet"
        assert status(cancelled).runner_id == "" and status(cancelled).start_time is None
        end_time(cancelled)


def _check_kept(before: pb.Execution, after: pb.Execution) -> None:
    same = ("id", "agent_instance_id", "agent_instance_name", "input", "request_id", "create_time")
    changed = [f for f in same if getattr(before, f) != getattr(after, f)]
    assert not changed, f"a terminal transition changed {changed}"
    assert status(after).runner_id == status(before).runner_id, "runner_id is kept after the execution ends"
    assert status(after).start_time == status(before).start_time, "start_time is kept after the execution ends"
    assert status(after).lease_expire_time is None, "lease_expire_time is unset outside EXECUTION_PHASE_RUNNING"
    assert after.version == before.version + 1 and update_time(after) >= update_time(before)


def test_update_time_is_the_time_of_the_last_write(client: Client) -> None:
    """`Execution.update_time`: equal to `create_time` until the first write, then the time of each write."""
    execution = create_execution(client)
    assert execution.update_time == execution.create_time
    wait_for_backend_clock(client, update_time(execution))
    running = claim(client, execution)
    assert update_time(running) > update_time(execution), "a write did not move update_time"
    assert create_time(execution) <= start_time(running) <= update_time(running)
    context = client.get_execution_context(pb.GetExecutionContextRequest(execution_id=running.id, runner_id=RUNNER))
    assert context.execution == running, "GetExecutionContext writes nothing"
    assert client.get_execution(pb.GetExecutionRequest(execution_id=running.id)).execution == running, (
        "GetExecutionContext writes nothing"
    )
