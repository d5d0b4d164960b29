"""Edges of the contract that the server used to get wrong: huge filter lists, reads that wrote."""

from __future__ import annotations

import base64
import sqlite3

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC


async def test_a_huge_phase_filter_list_is_invalid_argument_without_server_paths(served, db_path, token):
    async with CloudBackend(served.endpoint, token=token) as backend:
        with pytest.raises(GRPCError) as caught:
            await backend.list_executions(pb.ListExecutionsRequest(phases=[pb.ExecutionPhase.PENDING] * 300_000))
    assert caught.value.status == Status.INVALID_ARGUMENT
    assert "phases" in caught.value.message
    assert str(db_path.parent) not in caught.value.message


async def test_storage_errors_seen_remotely_name_no_server_path(served, db_path, token):
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        with sqlite3.connect(db_path) as conn:  # another program damages a stored row
            conn.execute("UPDATE agent_instance_versions SET agent_instance = '{not json'")
        with pytest.raises(GRPCError) as caught:
            await backend.get_agent_instance(
                pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name="helper"))
            )
    assert caught.value.status == Status.INTERNAL
    assert str(db_path.parent) not in (caught.value.message or "")
    assert "the server's database" in caught.value.message


async def test_get_execution_context_on_an_expired_lease_writes_nothing(served, db_path, token):
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id="r-1",
                agent_instance=pb.AgentInstanceRef(name="helper"),
                input=pb.ExecutionInput(message="hi"),
            )
        )
        claimed = await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=created.execution.id, phase=pb.ExecutionPhase.RUNNING, runner_id="runner-1"
            )
        )
        with sqlite3.connect(db_path) as conn:  # the lease ran out (set in the past rather than waited for)
            conn.execute("UPDATE executions SET lease_expire_us = 1000000")
        with pytest.raises(GRPCError) as caught:
            await backend.get_execution_context(
                pb.GetExecutionContextRequest(execution_id=created.execution.id, runner_id="runner-1")
            )
        assert caught.value.status == Status.FAILED_PRECONDITION
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        version, phase = conn.execute("SELECT version, phase FROM executions").fetchone()
    assert (version, phase) == (claimed.execution.version, int(pb.ExecutionPhase.RUNNING))


@pytest.mark.parametrize("payload", [b"[" * 900, b"[" * 100_000], ids=["deep-json", "long"])
async def test_a_page_token_nested_deep_is_invalid_argument(served, token, payload):
    forged = base64.urlsafe_b64encode(payload).decode()
    async with CloudBackend(served.endpoint, token=token) as backend:
        with pytest.raises(GRPCError) as caught:
            await backend.list_secrets(pb.ListSecretsRequest(page_token=forged))
    assert caught.value.status == Status.INVALID_ARGUMENT
    assert "Traceback" not in served.stderr_text()


KEYED = pb.AgentInstanceSpec(
    model=pb.ModelConfig(provider="ollama", model="llama3", credentials="${.secrets.MODEL_KEY}"),
)


@pytest.mark.parametrize("alteration", ["older value restored", "ciphertext stored as TEXT"])
async def test_an_altered_secret_row_is_internal_naming_the_secret_not_the_server_path(
    served, db_path, token, alteration
):
    """Sealed format 2 binds the secret's version; a non-bytes ciphertext is an altered database, not a TypeError."""
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.put_secret(pb.PutSecretRequest(name="MODEL_KEY", value="sk-first-value"))
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            (first,) = conn.execute("SELECT ciphertext FROM secrets").fetchone()
        await backend.put_secret(pb.PutSecretRequest(name="MODEL_KEY", value="sk-second-value"))
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="keyed", spec=KEYED))
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id="r-1",
                agent_instance=pb.AgentInstanceRef(name="keyed"),
                input=pb.ExecutionInput(message="hi"),
            )
        )
        execution_id = created.execution.id
        await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(execution_id=execution_id, phase=pb.ExecutionPhase.RUNNING, runner_id="r")
        )
        request = pb.GetExecutionContextRequest(execution_id=execution_id, runner_id="r")
        assert (await backend.get_execution_context(request)).secrets == {"MODEL_KEY": "sk-second-value"}
        stored: object = first if alteration == "older value restored" else base64.b64encode(first).decode()
        with sqlite3.connect(db_path) as conn:  # another program, or a restored backup, changes the row
            conn.execute("UPDATE secrets SET ciphertext = ?", (stored,))
        with pytest.raises(GRPCError) as caught:
            await backend.get_execution_context(request)
    assert caught.value.status == Status.INTERNAL
    message = caught.value.message or ""
    assert "'MODEL_KEY'" in message and "sk-first-value" not in message
    assert ("older value" if alteration == "older value restored" else "the database was altered") in message
    assert str(db_path.parent) not in message
    assert "Traceback" not in served.stderr_text()
