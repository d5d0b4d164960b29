"""`ApplyAgentInstance`, `GetAgentInstance`, `ListAgentInstances`, `DeleteAgentInstance`."""

from __future__ import annotations

from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, unique_name
from stigmer_backend.conformance.scenarios import (
    agent_of,
    apply_agent,
    create_execution,
    execution_of,
    spec,
    update_time,
)
from stigmer_backend.gen.stigmer.backend import v1 as pb


def _ref(agent: pb.AgentInstance, by: str = "name") -> pb.AgentInstanceRef:
    return pb.AgentInstanceRef(name=agent.name) if by == "name" else pb.AgentInstanceRef(id=agent.id)


class TestApplyAgentInstance:
    def test_a_new_name_is_created_at_version_1(self, client: Client) -> None:
        """First apply of a name: `APPLY_OUTCOME_CREATED`, `version` 1, the spec as given."""
        name, wanted = unique_name(), spec(instructions="Be brief. ✓ 日本語")
        response = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=wanted))
        agent = agent_of(response)
        assert response.outcome == pb.ApplyOutcome.CREATED
        assert (agent.name, agent.spec, agent.version) == (name, wanted, 1)
        assert agent.id and len(agent.id) <= 64
        assert agent.create_time is not None and agent.update_time == agent.create_time

    def test_an_equal_spec_is_unchanged_and_writes_nothing(self, client: Client) -> None:
        """Same spec again: `APPLY_OUTCOME_UNCHANGED`, same version and times."""
        agent = apply_agent(client)
        again = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=agent.spec))
        assert again.outcome == pb.ApplyOutcome.UNCHANGED
        assert again.agent_instance == agent

    def test_a_different_spec_is_updated_and_keeps_the_id(self, client: Client) -> None:
        """Changed spec: `APPLY_OUTCOME_UPDATED`, version + 1, same id and create time."""
        agent = apply_agent(client)
        changed = spec(instructions="something else")
        response = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=changed))
        updated = agent_of(response)
        assert response.outcome == pb.ApplyOutcome.UPDATED
        assert (updated.id, updated.version, updated.spec) == (agent.id, 2, changed)
        assert updated.create_time == agent.create_time and update_time(updated) >= update_time(agent)

    def test_env_order_is_part_of_the_spec(self, client: Client) -> None:
        """Specs are equal only with `env` in the same order."""
        a, b = pb.EnvironmentVariable(name="A", value="1"), pb.EnvironmentVariable(name="B", value="2")
        agent = apply_agent(client, spec(env=[a, b]))
        response = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=spec(env=[b, a])))
        assert response.outcome == pb.ApplyOutcome.UPDATED

    def test_a_deleted_name_applied_again_gets_a_new_id(self, client: Client) -> None:
        """After a delete, the name is free and gets a new identifier."""
        agent = apply_agent(client)
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(agent)))
        again = client.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=agent.name, spec=agent.spec))
        assert again.outcome == pb.ApplyOutcome.CREATED
        assert agent_of(again).id != agent.id and agent_of(again).version == 1

    def test_concurrent_applies_of_a_new_name_create_it_once(self, client: Client) -> None:
        """Two concurrent applies of one new name: exactly one `APPLY_OUTCOME_CREATED`."""
        request = pb.ApplyAgentInstanceRequest(name=unique_name(), spec=spec())
        results = client.concurrently([("apply_agent_instance", request)] * 6)
        responses = [r for r in results if isinstance(r, pb.ApplyAgentInstanceResponse)]
        assert len(responses) == len(results), results
        outcomes = [r.outcome for r in responses]
        assert outcomes.count(pb.ApplyOutcome.CREATED) == 1, outcomes
        assert set(outcomes) <= {pb.ApplyOutcome.CREATED, pb.ApplyOutcome.UNCHANGED}
        assert len({agent_of(r).id for r in responses}) == 1


class TestGetAgentInstance:
    def test_by_name_and_by_id(self, client: Client) -> None:
        """`AgentInstanceRef` by name or by id returns the stored agent instance."""
        agent = apply_agent(client)
        for by in ("name", "id"):
            assert (
                client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=_ref(agent, by))).agent_instance
                == agent
            )

    def test_unknown_is_not_found(self, client: Client) -> None:
        """No match: NOT_FOUND."""
        with expect_status(Status.NOT_FOUND):
            client.get_agent_instance(
                pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=unique_name()))
            )
        with expect_status(Status.NOT_FOUND):
            client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id="agi_nope")))


class TestDeleteAgentInstance:
    def test_deleted_agent_instance_is_gone(self, client: Client) -> None:
        """After delete: get is NOT_FOUND, and a second delete is NOT_FOUND."""
        agent = apply_agent(client)
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(agent, "id")))
        with expect_status(Status.NOT_FOUND):
            client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=_ref(agent)))
        with expect_status(Status.NOT_FOUND):
            client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(agent)))

    def test_executions_are_kept(self, client: Client) -> None:
        """Deleting an agent instance keeps its executions, which still run."""
        agent = apply_agent(client)
        execution = create_execution(client, agent)
        client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(agent)))
        kept = client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution
        assert kept == execution
        claimed = execution_of(
            client.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="cf-r"
                )
            )
        )
        context = client.get_execution_context(pb.GetExecutionContextRequest(execution_id=claimed.id, runner_id="cf-r"))
        assert agent_of(context).name == agent.name


class TestListAgentInstances:
    def test_lists_every_agent_once_in_name_order(self, client: Client) -> None:
        """All pages together hold each agent instance exactly once, ascending by name."""
        mine = {apply_agent(client).name for _ in range(7)}
        names, token, pages = [], "", 0
        while True:
            page = client.list_agent_instances(pb.ListAgentInstancesRequest(page_size=3, page_token=token))
            assert len(page.agent_instances) <= 3
            names += [a.name for a in page.agent_instances]
            token, pages = page.next_page_token, pages + 1
            if not token:
                break
            assert pages < 10_000
        assert names == sorted(names, key=lambda n: n.encode()) and len(names) == len(set(names))
        assert mine <= set(names)
