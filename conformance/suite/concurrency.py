"""Races: N claimers of one execution, concurrent creates, all through concurrent calls."""

from __future__ import annotations

from collections.abc import Sequence

from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, request_id
from stigmer_backend.conformance.scenarios import apply_agent, create_execution, execution_of, status
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
CLAIMERS = 8


def _claims(execution: pb.Execution, expected_version: int) -> list[tuple[str, pb.UpdateExecutionStatusRequest]]:
    return [
        ("update_execution_status", pb.UpdateExecutionStatusRequest(execution_id=execution.id, phase=Phase.RUNNING, runner_id=f"cf-claimer-{i}", expected_version=expected_version))
        for i in range(CLAIMERS)
    ]  # fmt: skip


def _codes(results: Sequence[object]) -> list[str]:
    return sorted(r.status.name for r in results if isinstance(r, GRPCError))


class TestConcurrentClaims:
    def test_claimers_with_the_version_they_read_have_one_winner(self, client: Client) -> None:
        """N runners claim with `expected_version`: exactly one succeeds, the others get ABORTED."""
        for _ in range(3):
            execution = create_execution(client)
            results = client.concurrently(_claims(execution, execution.version))
            winners = [execution_of(r) for r in results if isinstance(r, pb.UpdateExecutionStatusResponse)]
            assert len(winners) == 1, _codes(results)
            assert _codes(results) == ["ABORTED"] * (CLAIMERS - 1)
            stored = execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)))
            assert status(stored).runner_id == status(winners[0]).runner_id and stored.version == 2

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
        responses = [r for r in results if isinstance(r, pb.CreateExecutionResponse)]
        assert len(responses) == len(results) and all(r.created for r in responses)
        assert len({execution_of(r).id for r in responses}) == 12

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
        responses = [r for r in results if isinstance(r, pb.CreateExecutionResponse)]
        assert len({execution_of(r).id for r in responses}) == 1
        assert sum(r.created for r in responses) == 1
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
