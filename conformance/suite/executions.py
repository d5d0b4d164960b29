"""`CreateExecution` and `GetExecution`: creation, idempotency, snapshots, identifiers."""

from __future__ import annotations

import datetime

from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, present, request_id
from stigmer_backend.conformance.scenarios import (
    RUNNER,
    apply_agent,
    claim,
    create_execution,
    execution_of,
    spec,
    spec_of,
    status,
)
from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase


def _create(
    client: Client,
    agent_ref: pb.AgentInstanceRef,
    message: str = "hello",
    rid: str | None = None,
    data: Struct | None = None,
) -> pb.CreateExecutionResponse:
    request = pb.CreateExecutionRequest(
        request_id=rid or request_id(),
        agent_instance=agent_ref,
        input=pb.ExecutionInput(message=message, data=data),
    )
    return client.create_execution(request)


class TestCreateExecution:
    def test_creates_a_pending_execution_at_version_1(self, client: Client) -> None:
        """A new execution is `EXECUTION_PHASE_PENDING`, `version` 1, with the request's fields."""
        agent = apply_agent(client)
        before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        response = _create(client, pb.AgentInstanceRef(name=agent.name), rid="cf-create-1-" + request_id())
        execution = execution_of(response)
        assert response.created
        assert execution.id and len(execution.id) <= 64 and execution.id.isascii()
        assert (execution.agent_instance_id, execution.agent_instance_name) == (agent.id, agent.name)
        assert execution.input == pb.ExecutionInput(message="hello")
        assert status(execution).phase == Phase.PENDING and execution.version == 1
        assert status(execution).runner_id == "" and status(execution).lease_expire_time is None
        assert execution.request_id.startswith("cf-create-1-")
        assert execution.create_time is not None and execution.create_time > before
        assert execution.update_time == execution.create_time

    def test_agent_instance_can_be_named_by_id(self, client: Client) -> None:
        """`AgentInstanceRef.id` works like the name."""
        agent = apply_agent(client)
        execution = execution_of(_create(client, pb.AgentInstanceRef(id=agent.id)))
        assert execution.agent_instance_id == agent.id

    def test_identifiers_sort_in_creation_order(self, client: Client) -> None:
        """`Execution.id`: a later execution has a bytewise greater id."""
        agent = apply_agent(client)
        ids = [create_execution(client, agent).id for _ in range(5)]
        assert ids == sorted(ids, key=lambda i: i.encode()) and len(set(ids)) == 5

    def test_a_retry_returns_the_same_execution(self, client: Client) -> None:
        """Same `request_id`, equal request: the same execution, `created` false, nothing written."""
        agent = apply_agent(client)
        rid = request_id()
        first = _create(client, pb.AgentInstanceRef(name=agent.name), rid=rid, data=Struct.from_dict({"k": [1, "v"]}))
        again = _create(client, pb.AgentInstanceRef(name=agent.name), rid=rid, data=Struct.from_dict({"k": [1, "v"]}))
        assert (first.created, again.created) == (True, False)
        assert again.execution == first.execution

    def test_a_retry_returns_the_execution_in_its_current_state(self, client: Client) -> None:
        """The retried create returns the execution as it is now, not as it was created."""
        agent = apply_agent(client)
        rid = request_id()
        first = execution_of(_create(client, pb.AgentInstanceRef(name=agent.name), rid=rid))
        running = claim(client, first)
        again = _create(client, pb.AgentInstanceRef(name=agent.name), rid=rid)
        assert not again.created and again.execution == running

    def test_a_retry_by_id_of_a_create_by_name_is_equal(self, client: Client) -> None:
        """An equal request names the same agent instance by the id or the name the execution recorded."""
        agent = apply_agent(client)
        rid = request_id()
        first = execution_of(_create(client, pb.AgentInstanceRef(name=agent.name), rid=rid))
        again = _create(client, pb.AgentInstanceRef(id=agent.id), rid=rid)
        assert not again.created and execution_of(again).id == first.id

    def test_a_reused_request_id_with_other_input_is_already_exists(self, client: Client) -> None:
        """Same `request_id`, different input: ALREADY_EXISTS."""
        agent = apply_agent(client)
        rid = request_id()
        _create(client, pb.AgentInstanceRef(name=agent.name), rid=rid, message="one")
        with expect_status(Status.ALREADY_EXISTS):
            _create(client, pb.AgentInstanceRef(name=agent.name), rid=rid, message="two")

    def test_a_reused_request_id_with_another_agent_is_already_exists(self, client: Client) -> None:
        """Same `request_id`, different agent instance: ALREADY_EXISTS."""
        first, second = apply_agent(client), apply_agent(client)
        rid = request_id()
        _create(client, pb.AgentInstanceRef(name=first.name), rid=rid)
        with expect_status(Status.ALREADY_EXISTS):
            _create(client, pb.AgentInstanceRef(name=second.name), rid=rid)

    def test_a_retry_after_the_agent_was_deleted_still_returns_the_execution(self, client: Client) -> None:
        """An already used `request_id` is decided before the agent instance is looked up."""
        agent = apply_agent(client)
        rid = request_id()
        first = execution_of(_create(client, pb.AgentInstanceRef(name=agent.name), rid=rid))
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=agent.id)))
        again = _create(client, pb.AgentInstanceRef(name=agent.name), rid=rid)
        assert not again.created and execution_of(again).id == first.id

    def test_unknown_agent_instance_is_not_found(self, client: Client) -> None:
        """A new `request_id` naming no agent instance: NOT_FOUND, nothing created."""
        with expect_status(Status.NOT_FOUND):
            _create(client, pb.AgentInstanceRef(name="cf-no-such-agent-xyz"))
        with expect_status(Status.NOT_FOUND):
            _create(client, pb.AgentInstanceRef(id="agi_no_such_id"))

    def test_the_execution_runs_the_spec_it_was_created_with(self, client: Client) -> None:
        """The execution keeps a snapshot: a later apply does not change its context."""
        agent = apply_agent(client, spec(instructions="version one"))
        execution = create_execution(client, agent)
        client.apply_agent_instance(
            pb.ApplyAgentInstanceRequest(name=agent.name, spec=spec(instructions="version two"))
        )
        claim(client, execution)
        context = client.get_execution_context(
            pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=RUNNER)
        )
        snapshot = present(context.agent_instance, "GetExecutionContextResponse.agent_instance", "the snapshot it runs")
        assert spec_of(snapshot).instructions == "version one"
        assert snapshot.version == agent.version


class TestGetExecution:
    def test_returns_the_current_state(self, client: Client) -> None:
        """`GetExecution` returns what the last write returned."""
        running = claim(client, create_execution(client))
        assert client.get_execution(pb.GetExecutionRequest(execution_id=running.id)).execution == running

    def test_unknown_execution_is_not_found(self, client: Client) -> None:
        """No execution with that id: NOT_FOUND."""
        with expect_status(Status.NOT_FOUND):
            client.get_execution(pb.GetExecutionRequest(execution_id="exe_00000000000000000000000000"))

    def test_empty_id_is_invalid_argument(self, client: Client) -> None:
        """Empty `execution_id`: INVALID_ARGUMENT naming it."""
        with expect_status(Status.INVALID_ARGUMENT, naming="execution_id"):
            client.get_execution(pb.GetExecutionRequest())


class TestGetExecutionContext:
    def test_gives_the_running_execution_and_its_snapshot(self, client: Client) -> None:
        """For the lease holder of a RUNNING execution: the execution, the snapshot, the environment."""
        agent = apply_agent(client, spec(env=[pb.EnvironmentVariable(name="MODE", value="fast ${not.a.secret}")]))
        running = claim(client, create_execution(client, agent))
        context = client.get_execution_context(pb.GetExecutionContextRequest(execution_id=running.id, runner_id=RUNNER))
        assert context.execution == running
        assert context.agent_instance == agent
        assert context.environment == {"MODE": "fast ${not.a.secret}"}
        assert context.secrets == {}

    def test_not_running_is_failed_precondition(self, client: Client) -> None:
        """A PENDING or terminal execution has no context: FAILED_PRECONDITION."""
        pending = create_execution(client)
        with expect_status(Status.FAILED_PRECONDITION):
            client.get_execution_context(pb.GetExecutionContextRequest(execution_id=pending.id, runner_id=RUNNER))

    def test_another_runner_is_failed_precondition(self, client: Client) -> None:
        """Only the lease holder gets the context."""
        running = claim(client, create_execution(client))
        with expect_status(Status.FAILED_PRECONDITION):
            request = pb.GetExecutionContextRequest(execution_id=running.id, runner_id="cf-intruder")
            client.get_execution_context(request)

    def test_unknown_execution_is_not_found(self, client: Client) -> None:
        """No such execution: NOT_FOUND."""
        with expect_status(Status.NOT_FOUND):
            request = pb.GetExecutionContextRequest(execution_id="exe_does_not_exist", runner_id=RUNNER)
            client.get_execution_context(request)
