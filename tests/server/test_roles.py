"""Least privilege on `stigmer server --tokens-file`: people, runners and admins hold different credentials.

The attack this closes: with one shared token, anyone could apply an agent
referencing `${.secrets.X}`, create an execution, claim it and read X from
`GetExecutionContext`; and any runner could pass the lease-holder check with
the `runner_id` that `GetExecution` shows to everyone.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.builders import SPEC
from tests.remote_fixtures import count_rows, write_token_file

TOKENS = {name: secrets.token_hex(20) for name in ("admin", "alice", "runner-1", "runner-2")}
KEYED = pb.AgentInstanceSpec(
    instructions="be brief",
    model=pb.ModelConfig(provider="ollama", model="llama3", credentials="${.secrets.MODEL_KEY}"),
)


@pytest.fixture
def roles_server(db_path, tmp_path, server_env) -> Iterator[ServerProcess]:
    lines = [
        f"admin ops {TOKENS['admin']}",
        f"person alice {TOKENS['alice']}  # a comment",
        f"runner runner-1 {TOKENS['runner-1']}",
        f"runner runner-2 {TOKENS['runner-2']}",
    ]
    tokens_file = write_token_file(tmp_path / "tokens", "\n".join(lines))
    server_env = {**server_env, "STIGMER_MASTER_KEY": "A" * 43 + "="}
    with ServerProcess.start(["--db", str(db_path), "--tokens-file", str(tokens_file)], env=server_env) as server:
        yield server


def _client(server: ServerProcess, who: str) -> CloudBackend:
    return CloudBackend(server.endpoint, token=TOKENS[who])


async def _denied(call) -> str:
    with pytest.raises(GRPCError) as caught:
        await call
    assert caught.value.status == Status.PERMISSION_DENIED, caught.value
    return caught.value.message


async def test_people_cannot_put_secrets_nor_reference_them_nor_read_contexts(roles_server, db_path):
    async with _client(roles_server, "alice") as alice:
        info = await alice.get_backend_info(pb.GetBackendInfoRequest())
        assert pb.Capability.AUTHENTICATION in info.capabilities
        await _denied(alice.put_secret(pb.PutSecretRequest(name="MODEL_KEY", value="sk-mine")))
        message = await _denied(alice.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="keyed", spec=KEYED)))
        assert "references secrets" in message
        assert (count_rows(db_path, "secrets"), count_rows(db_path, "agent_instances")) == (0, 0)
        # What people may do: agents without secrets, executions, reading.
        await alice.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="plain", spec=SPEC))
        created = await alice.create_execution(
            pb.CreateExecutionRequest(
                request_id="r-1",
                agent_instance=pb.AgentInstanceRef(name="plain"),
                input=pb.ExecutionInput(message="hi"),
            )
        )
        execution_id = created.execution.id
        await _denied(
            alice.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution_id, phase=pb.ExecutionPhase.RUNNING, runner_id="alice"
                )
            )
        )
        await _denied(
            alice.get_execution_context(pb.GetExecutionContextRequest(execution_id=execution_id, runner_id="alice"))
        )
        assert (await alice.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution.version == 1
        await alice.list_secrets(pb.ListSecretsRequest())


async def test_a_runner_acts_only_as_the_runner_its_credential_names(roles_server):
    async with _client(roles_server, "admin") as admin:
        await admin.put_secret(pb.PutSecretRequest(name="MODEL_KEY", value="sk-the-real-key"))
        await admin.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="keyed", spec=KEYED))
        created = await admin.create_execution(
            pb.CreateExecutionRequest(
                request_id="r-1",
                agent_instance=pb.AgentInstanceRef(name="keyed"),
                input=pb.ExecutionInput(message="hi"),
            )
        )
    execution_id = created.execution.id
    async with _client(roles_server, "runner-1") as runner1, _client(roles_server, "runner-2") as runner2:
        # Claiming under another runner's name is refused, even before anyone holds the execution.
        await _denied(
            runner2.update_execution_status(
                pb.UpdateExecutionStatusRequest(
                    execution_id=execution_id, phase=pb.ExecutionPhase.RUNNING, runner_id="runner-1"
                )
            )
        )
        await runner1.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution_id,
                phase=pb.ExecutionPhase.RUNNING,
                runner_id="runner-1",
                lease_duration=timedelta(minutes=5),
            )
        )
        shown = (await runner2.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
        assert shown.status.runner_id == "runner-1"  # visible to all, and useless to another credential
        message = await _denied(
            runner2.get_execution_context(
                pb.GetExecutionContextRequest(execution_id=execution_id, runner_id=shown.status.runner_id)
            )
        )
        assert "sk-the-real-key" not in message
        context = await runner1.get_execution_context(
            pb.GetExecutionContextRequest(execution_id=execution_id, runner_id="runner-1")
        )
        assert context.secrets == {"MODEL_KEY": "sk-the-real-key"}
        # What runners may not do.
        await _denied(runner1.put_secret(pb.PutSecretRequest(name="MODEL_KEY", value="x")))
        await _denied(runner1.list_secrets(pb.ListSecretsRequest()))
        await _denied(runner1.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="plain", spec=SPEC)))
        await _denied(
            runner1.create_execution(
                pb.CreateExecutionRequest(
                    request_id="r-2",
                    agent_instance=pb.AgentInstanceRef(name="keyed"),
                    input=pb.ExecutionInput(message="x"),
                )
            )
        )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("boss ops {t}", "unknown role 'boss'"),
        ("admin ops", "expected 'ROLE NAME TOKEN'"),
        ("admin ops short", "at least 16 printable ASCII characters"),
        ("admin a {t}\nperson b {t}", "already given to another name"),
        ("# nothing\n", "holds no tokens"),
    ],
)
def test_a_malformed_tokens_file_is_a_one_line_startup_error(db_path, tmp_path, server_env, content, problem):
    import subprocess
    import sys
    from pathlib import Path

    tokens_file = write_token_file(tmp_path / "tokens", content.format(t=secrets.token_hex(20)))
    stigmer = str(Path(sys.executable).with_name("stigmer"))
    result = subprocess.run(
        [stigmer, "server", "--port", "0", "--db", str(db_path), "--tokens-file", str(tokens_file)],
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], result.stderr


def test_the_conformance_module_for_roles_passes_against_the_server(roles_server, tmp_path, server_env):
    """`conformance/suite/authorization.py`, run as a third party would, against this server."""
    import subprocess
    import sys
    from pathlib import Path

    admin_token = write_token_file(tmp_path / "admin-token", TOKENS["admin"])
    stigmer = str(Path(sys.executable).with_name("stigmer"))
    env = {**server_env, "STIGMER_CONFORMANCE_ROLES": str(tmp_path / "tokens")}
    result = subprocess.run(
        [
            stigmer,
            "conformance",
            "run",
            "--target",
            roles_server.endpoint,
            "--token-file",
            str(admin_token),
            "-k",
            "People or Runners",
            "-rs",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()
    assert any("5 passed" in line for line in summary), result.stdout[-2000:]
    assert " skipped" not in result.stdout.splitlines()[-1]


async def test_a_runner_that_stops_cancels_what_it_holds_with_its_own_credential(roles_server):
    """A runner may not call CancelExecution; stopping mid-run must still leave CANCELLED, not RUNNING."""
    import asyncio

    from stigmer_backend.runner.executor import run_execution
    from tests.runner.fake_model import start_fake_model, stop_fake_model

    model = start_fake_model()
    try:
        slow = pb.AgentInstanceSpec(
            model=pb.ModelConfig(provider="openai-compatible", model="slow", endpoint=model.endpoint)
        )
        async with _client(roles_server, "admin") as admin:
            await admin.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="slow", spec=slow))
            created = await admin.create_execution(
                pb.CreateExecutionRequest(
                    request_id="r-slow",
                    agent_instance=pb.AgentInstanceRef(name="slow"),
                    input=pb.ExecutionInput(message="hi"),
                )
            )
        async with _client(roles_server, "runner-1") as runner1:
            await _denied(runner1.cancel_execution(pb.CancelExecutionRequest(execution_id=created.execution.id)))
            running = asyncio.ensure_future(
                run_execution(runner1, created.execution, runner_id="runner-1", cancel_reason="runner-1 stopped")
            )
            assert await asyncio.to_thread(model.streaming.wait, 60), "the model call never started"
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            final = (await runner1.get_execution(pb.GetExecutionRequest(execution_id=created.execution.id))).execution
        assert (final.status.phase, final.status.message) == (pb.ExecutionPhase.CANCELLED, "runner-1 stopped")
        assert await asyncio.to_thread(model.disconnected.wait, 60), "the model call was not aborted"
    finally:
        stop_fake_model(model)
