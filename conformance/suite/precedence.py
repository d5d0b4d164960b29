"""Several failures at once: the code is the first of `INVALID_ARGUMENT`, `NOT_FOUND`, `ABORTED`,
`FAILED_PRECONDITION` (with `ALREADY_EXISTS` where `CreateExecution` puts it), on every RPC that can meet two."""

from __future__ import annotations

from typing import Unpack

from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id, unique_name
from stigmer_backend.conformance.scenarios import (
    OTHER_RUNNER,
    RUNNER,
    StatusFields,
    apply_agent,
    claim,
    create_execution,
    execution_in,
)
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
UNKNOWN = "exe_no_such_execution_for_precedence"


def _update(
    execution_id: str, phase: pb.ExecutionPhase = Phase.RUNNING, runner_id: str = RUNNER, **fields: Unpack[StatusFields]
) -> pb.UpdateExecutionStatusRequest:
    return pb.UpdateExecutionStatusRequest(execution_id=execution_id, phase=phase, runner_id=runner_id, **fields)


class TestCreateExecution:
    def test_invalid_argument_before_not_found(self, client: Client) -> None:
        """Invalid input for an agent instance that does not exist: INVALID_ARGUMENT."""
        ref = pb.AgentInstanceRef(name=unique_name("absent"))
        with expect_status(Status.INVALID_ARGUMENT, naming="input"):
            client.create_execution(
                pb.CreateExecutionRequest(request_id=request_id(), agent_instance=ref, input=pb.ExecutionInput())
            )

    def test_already_exists_before_not_found(self, client: Client) -> None:
        """A used `request_id`, another input, an agent instance deleted since: ALREADY_EXISTS."""
        agent = apply_agent(client)
        rid, ref = request_id(), pb.AgentInstanceRef(name=agent.name)
        client.create_execution(
            pb.CreateExecutionRequest(request_id=rid, agent_instance=ref, input=pb.ExecutionInput(message="one"))
        )
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=ref))
        with expect_status(Status.ALREADY_EXISTS):
            client.create_execution(
                pb.CreateExecutionRequest(request_id=rid, agent_instance=ref, input=pb.ExecutionInput(message="two"))
            )

    def test_invalid_argument_before_already_exists(self, client: Client) -> None:
        """A used `request_id` with an invalid input: INVALID_ARGUMENT (validation comes before any read)."""
        agent = apply_agent(client)
        rid, ref = request_id(), pb.AgentInstanceRef(name=agent.name)
        client.create_execution(
            pb.CreateExecutionRequest(request_id=rid, agent_instance=ref, input=pb.ExecutionInput(message="one"))
        )
        with expect_status(Status.INVALID_ARGUMENT, naming="input"):
            client.create_execution(
                pb.CreateExecutionRequest(request_id=rid, agent_instance=ref, input=pb.ExecutionInput())
            )


class TestUpdateExecutionStatus:
    def test_invalid_argument_before_not_found(self, client: Client) -> None:
        """An invalid field on an execution that does not exist: INVALID_ARGUMENT."""
        with expect_status(Status.INVALID_ARGUMENT, naming="runner_id"):
            client.update_execution_status(_update(UNKNOWN, runner_id="not/valid"))
        with expect_status(Status.INVALID_ARGUMENT, naming="error"):
            client.update_execution_status(_update(UNKNOWN, phase=Phase.FAILED))

    def test_not_found_before_aborted(self, client: Client) -> None:
        """An `expected_version` for an execution that does not exist: NOT_FOUND."""
        with expect_status(Status.NOT_FOUND):
            client.update_execution_status(_update(UNKNOWN, expected_version=3))

    def test_invalid_argument_before_aborted_and_failed_precondition(self, client: Client) -> None:
        """An invalid field, a wrong version and a terminal execution at once: INVALID_ARGUMENT, nothing written."""
        done = execution_in(client, Phase.SUCCEEDED)
        with expect_status(Status.INVALID_ARGUMENT, naming="message"):
            client.update_execution_status(_update(done.id, expected_version=done.version + 1, message="m" * 4097))

    def test_aborted_before_another_holder(self, client: Client) -> None:
        """A wrong `expected_version` on an execution held by another runner: ABORTED."""
        running = claim(client, create_execution(client))
        with expect_status(Status.ABORTED):
            client.update_execution_status(
                _update(running.id, runner_id=OTHER_RUNNER, expected_version=running.version + 1)
            )


class TestCancelExecution:
    def test_invalid_argument_before_not_found(self, client: Client) -> None:
        """A reason over 4,096 bytes for an execution that does not exist: INVALID_ARGUMENT."""
        with expect_status(Status.INVALID_ARGUMENT, naming="reason"):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=UNKNOWN, reason="r" * 4097))

    def test_not_found_before_aborted(self, client: Client) -> None:
        """An `expected_version` for an execution that does not exist: NOT_FOUND."""
        with expect_status(Status.NOT_FOUND):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=UNKNOWN, expected_version=2))

    def test_aborted_before_failed_precondition(self, client: Client) -> None:
        """A wrong `expected_version` on a terminal execution: ABORTED."""
        done = execution_in(client, Phase.FAILED)
        with expect_status(Status.ABORTED):
            client.cancel_execution(pb.CancelExecutionRequest(execution_id=done.id, expected_version=done.version - 1))


class TestGetExecutionContext:
    def test_invalid_argument_before_not_found(self, client: Client) -> None:
        """An invalid `runner_id` for an execution that does not exist: INVALID_ARGUMENT."""
        with expect_status(Status.INVALID_ARGUMENT, naming="runner_id"):
            client.get_execution_context(pb.GetExecutionContextRequest(execution_id=UNKNOWN, runner_id="a b"))

    def test_invalid_argument_before_failed_precondition(self, client: Client) -> None:
        """An invalid `runner_id` for an execution that is not running: INVALID_ARGUMENT."""
        pending = create_execution(client)
        with expect_status(Status.INVALID_ARGUMENT, naming="runner_id"):
            client.get_execution_context(pb.GetExecutionContextRequest(execution_id=pending.id, runner_id="a b"))

    def test_not_found_before_failed_precondition(self, client: Client) -> None:
        """An execution that does not exist is NOT_FOUND whoever asks."""
        with expect_status(Status.NOT_FOUND):
            client.get_execution_context(pb.GetExecutionContextRequest(execution_id=UNKNOWN, runner_id=OTHER_RUNNER))


class TestIdentifiers:
    def test_an_impossible_identifier_is_invalid_argument_not_not_found(self, client: Client) -> None:
        """An id that cannot be an identifier (65 characters) names nothing, yet is INVALID_ARGUMENT on every RPC."""
        long_id = "x" * 65
        ref = pb.AgentInstanceRef(id=long_id)
        calls = [
            ("get_execution", pb.GetExecutionRequest(execution_id=long_id)),
            ("update_execution_status", _update(long_id)),
            ("cancel_execution", pb.CancelExecutionRequest(execution_id=long_id)),
            ("get_execution_context", pb.GetExecutionContextRequest(execution_id=long_id, runner_id=RUNNER)),
            ("get_agent_instance", pb.GetAgentInstanceRequest(agent_instance=ref)),
            ("delete_agent_instance", pb.DeleteAgentInstanceRequest(agent_instance=ref)),
            ("list_executions", pb.ListExecutionsRequest(agent_instance_id=long_id)),
            ("create_execution", pb.CreateExecutionRequest(request_id=request_id(), agent_instance=ref, input=pb.ExecutionInput(message="m"))),
        ]  # fmt: skip
        for rpc, request in calls:
            with expect_status(Status.INVALID_ARGUMENT):
                getattr(client, rpc)(request)
        watch = client.watch(long_id)
        assert watch.wait_until(lambda w: w.done), "the watch of an impossible identifier did not end"
        with expect_status(Status.INVALID_ARGUMENT, naming="execution_id"):
            watch.reraise("WatchExecution fails with INVALID_ARGUMENT if execution_id cannot be an identifier")

    def test_a_64_character_identifier_is_not_found_not_invalid_argument(self, client: Client) -> None:
        """The bound is inclusive: 64 printable ASCII characters can be an identifier, so one that names nothing
        is NOT_FOUND on every RPC, and filters `ListExecutions` to nothing."""
        possible_id = "x" * 64
        ref = pb.AgentInstanceRef(id=possible_id)
        calls = [
            ("get_execution", pb.GetExecutionRequest(execution_id=possible_id)),
            ("update_execution_status", _update(possible_id)),
            ("cancel_execution", pb.CancelExecutionRequest(execution_id=possible_id)),
            ("get_execution_context", pb.GetExecutionContextRequest(execution_id=possible_id, runner_id=RUNNER)),
            ("get_agent_instance", pb.GetAgentInstanceRequest(agent_instance=ref)),
            ("delete_agent_instance", pb.DeleteAgentInstanceRequest(agent_instance=ref)),
            ("create_execution", pb.CreateExecutionRequest(request_id=request_id(), agent_instance=ref, input=pb.ExecutionInput(message="m"))),
        ]  # fmt: skip
        for rpc, request in calls:
            with expect_status(Status.NOT_FOUND):
                getattr(client, rpc)(request)
        assert not client.list_executions(pb.ListExecutionsRequest(agent_instance_id=possible_id)).executions
        watch = client.watch(possible_id)
        assert watch.wait_until(lambda w: w.done), "the watch of an unknown identifier did not end"
        with expect_status(Status.NOT_FOUND):
            watch.reraise("WatchExecution fails with NOT_FOUND if the execution does not exist")
