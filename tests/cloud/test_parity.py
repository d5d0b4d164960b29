"""The same calls fail the same way in-process and through ``CloudBackend`` -> ``stigmer server`` -> SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from grpclib import GRPCError

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC
from tests.builders import create_request as _create


async def _outcome(call) -> tuple[str, str]:
    try:
        await call
    except GRPCError as error:
        return error.status.name, error.message or ""
    return "OK", ""


async def story(backend) -> list[tuple[str, str, str]]:
    """One scripted sequence of calls, recording each one's status code and message."""
    await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
    created = await backend.create_execution(_create("r-1", "hello"))
    execution_id = created.execution.id
    claim = pb.UpdateExecutionStatusRequest(
        execution_id=execution_id,
        phase=pb.ExecutionPhase.RUNNING,
        runner_id="runner-a",
        lease_duration=timedelta(seconds=60),
    )
    steps = [
        ("invalid_argument", backend.get_execution(pb.GetExecutionRequest(execution_id=""))),
        ("invalid_name", backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="Bad Name!", spec=SPEC))),
        ("not_found", backend.get_execution(pb.GetExecutionRequest(execution_id="exe-nope"))),
        (
            "agent_not_found",
            backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id="r-2",
                    agent_instance=pb.AgentInstanceRef(name="ghost"),
                    input=pb.ExecutionInput(message="x"),
                )
            ),
        ),
        ("already_exists", backend.create_execution(_create("r-1", "a different input"))),
        ("idempotent_retry", backend.create_execution(_create("r-1", "hello"))),
        (
            "aborted",
            backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution_id,
                    phase=pb.ExecutionPhase.RUNNING,
                    runner_id="runner-a",
                    expected_version=99,
                    lease_duration=timedelta(seconds=60),
                )
            ),
        ),
        ("claim", backend.update_execution_status(claim)),
        (
            "held_by_another",
            backend.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution_id,
                    phase=pb.ExecutionPhase.RUNNING,
                    runner_id="runner-b",
                    lease_duration=timedelta(seconds=60),
                )
            ),
        ),
        ("cancel", backend.cancel_execution(pb.CancelExecutionRequest(execution_id=execution_id, reason="stop"))),
        ("cancel_terminal", backend.cancel_execution(pb.CancelExecutionRequest(execution_id=execution_id))),
        ("negative_page", backend.list_executions(pb.ListExecutionsRequest(page_size=-1))),
        ("bad_page_token", backend.list_agent_instances(pb.ListAgentInstancesRequest(page_token="garbage"))),
        ("secret_missing", backend.delete_secret(pb.DeleteSecretRequest(name="NOPE"))),
        (
            "delete_missing_agent",
            backend.delete_agent_instance(
                pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="ghost"))
            ),
        ),
    ]
    results = []
    for name, call in steps:
        results.append((name, *await _outcome(call)))
    try:
        async for _ in backend.watch_execution(pb.WatchExecutionRequest(execution_id="exe-nope")):
            pass
    except GRPCError as error:
        results.append(("watch_not_found", error.status.name, error.message or ""))
    # Identifiers are unique per database; everything else must match to the letter.
    return [(name, code, message.replace(execution_id, "<execution id>")) for name, code, message in results]


async def test_status_codes_and_messages_match_the_in_process_backend(served, token, tmp_path):
    async with SqliteBackend(tmp_path / "local.db") as local:
        expected = await story(local)
    async with CloudBackend(served.endpoint, token=token) as remote:
        got = await story(remote)
    assert got == expected
    codes = {name: code for name, code, _ in expected}
    # The story really exercises the codes the contract documents (a broken story would not).
    assert codes == {
        "invalid_argument": "INVALID_ARGUMENT",
        "invalid_name": "INVALID_ARGUMENT",
        "not_found": "NOT_FOUND",
        "agent_not_found": "NOT_FOUND",
        "already_exists": "ALREADY_EXISTS",
        "idempotent_retry": "OK",
        "aborted": "ABORTED",
        "claim": "OK",
        "held_by_another": "FAILED_PRECONDITION",
        "cancel": "OK",
        "cancel_terminal": "FAILED_PRECONDITION",
        "negative_page": "INVALID_ARGUMENT",
        "bad_page_token": "INVALID_ARGUMENT",
        "secret_missing": "NOT_FOUND",
        "delete_missing_agent": "NOT_FOUND",
        "watch_not_found": "NOT_FOUND",
    }


@pytest.mark.parametrize("page_size", [1, 2, 50])
async def test_results_cross_the_wire_unchanged(served, token, tmp_path, page_size):
    async with CloudBackend(served.endpoint, token=token) as remote:
        for name in ("alpha", "beta", "gamma"):
            await remote.apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=SPEC))
        names, token_ = [], ""
        while True:
            page = await remote.list_agent_instances(
                pb.ListAgentInstancesRequest(page_size=page_size, page_token=token_)
            )
            names += [agent.name for agent in page.agent_instances]
            token_ = page.next_page_token
            if not token_:
                break
        fetched = await remote.get_agent_instance(
            pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="beta"))
        )
    assert names == ["alpha", "beta", "gamma"]
    assert fetched.agent_instance.spec == SPEC
