"""Races: N claimers of one execution, concurrent creates, all through concurrent calls."""

from __future__ import annotations

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, request_id
from stigmer_backend.conformance.scenarios import apply_agent, create_execution
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
CLAIMERS = 8


def _claims(execution, expected_version):
    return [
        ("update_execution_status", pb.UpdateExecutionStatusRequest(execution_id=execution.id, phase=Phase.RUNNING, runner_id=f"cf-claimer-{i}", expected_version=expected_version))
        for i in range(CLAIMERS)
    ]  # fmt: skip


def _codes(results):
    return sorted(r.status.name for r in results if isinstance(r, GRPCError))


class TestConcurrentClaims:
    def test_claimers_with_the_version_they_read_have_one_winner(self, client: Client) -> None:
        """N runners claim with `expected_version`: exactly one succeeds, the others get ABORTED."""
        for _ in range(3):
            execution = create_execution(client)
            results = client.concurrently(_claims(execution, execution.version))
            winners = [r.execution for r in results if not isinstance(r, GRPCError)]
            assert len(winners) == 1, _codes(results)
            assert _codes(results) == ["ABORTED"] * (CLAIMERS - 1)
            stored = client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution
            assert stored.status.runner_id == winners[0].status.runner_id and stored.version == 2

    def test_claimers_without_a_version_have_one_winner(self, client: Client) -> None:
        """N runners claim without `expected_version`: one succeeds, the others FAILED_PRECONDITION (held)."""
        execution = create_execution(client)
        results = client.concurrently(_claims(execution, 0))
        assert sum(not isinstance(r, GRPCError) for r in results) == 1
        assert _codes(results) == ["FAILED_PRECONDITION"] * (CLAIMERS - 1)


class TestConcurrentCreates:
    def test_distinct_requests_get_distinct_ids(self, client: Client) -> None:
        """Concurrent creates with different `request_id`s: all created, all ids unique."""
        agent = apply_agent(client)
        calls = [
            ("create_execution", pb.CreateExecutionRequest(request_id=request_id(), agent_instance=pb.AgentInstanceRef(name=agent.name), input=pb.ExecutionInput(message=str(i))))
            for i in range(12)
        ]  # fmt: skip
        results = client.concurrently(calls)
        assert all(not isinstance(r, GRPCError) and r.created for r in results)
        assert len({r.execution.id for r in results}) == 12

    def test_one_request_id_creates_one_execution(self, client: Client) -> None:
        """Concurrent retries of one request: one execution, `created` true exactly once."""
        agent = apply_agent(client)
        request = pb.CreateExecutionRequest(
            request_id=request_id(),
            agent_instance=pb.AgentInstanceRef(name=agent.name),
            input=pb.ExecutionInput(message="x"),
        )
        results = client.concurrently([("create_execution", request)] * 8)
        assert not [r for r in results if isinstance(r, GRPCError)], _codes(results)
        assert len({r.execution.id for r in results}) == 1
        assert sum(r.created for r in results) == 1
        listed = client.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id)).executions
        assert len(listed) == 1


def test_a_status_code_is_never_unknown(client: Client) -> None:
    """Concurrency never surfaces as UNKNOWN or INTERNAL (for example a storage lock)."""
    execution = create_execution(client)
    results = client.concurrently(_claims(execution, execution.version) + _claims(execution, 0))
    assert not {r.status for r in results if isinstance(r, GRPCError)} & {
        Status.UNKNOWN,
        Status.INTERNAL,
        Status.UNAVAILABLE,
    }
