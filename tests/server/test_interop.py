"""Clients that share none of our code call ``stigmer server``: ``buf curl`` through reflection,
and a client that Google's ``grpcio-tools`` generates from the same proto files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.remote_fixtures import count_rows

SERVICE = "stigmer.backend.v1.BackendService"
PROTOC = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "proto")]


@pytest.fixture
def curl(buf, served, token):
    """``buf curl`` over h2c against the served endpoint; returns the finished process."""

    def run(path: str, *, data: str | None = None, auth: bool = True, reflect_auth: bool = True, extra=()):
        header = f"authorization: Bearer {token}"
        command = [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", *extra]
        if auth:
            command += ["-H", header]
        if reflect_auth:
            command += ["--reflect-header", header]
        if data is not None:
            command += ["-d", data]
        command.append(f"http://{served.endpoint}{path}")
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    return run


def test_buf_curl_lists_the_services_through_reflection(curl):
    result = curl("", extra=["--list-services"])
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {SERVICE, "grpc.health.v1.Health"}


def test_buf_curl_lists_every_rpc_of_the_contract(curl):
    result = curl("", extra=["--list-methods"])
    assert result.returncode == 0, result.stderr
    methods = {line for line in result.stdout.split() if line.startswith(SERVICE)}
    proto = (REPO / "proto/stigmer/backend/v1/backend_service.proto").read_text()
    declared = {
        f"{SERVICE}/{line.split()[1].split('(')[0]}" for line in proto.splitlines() if line.strip().startswith("rpc ")
    }
    assert methods == declared


def test_reflection_requires_the_token(curl):
    result = curl("", extra=["--list-services"], auth=False, reflect_auth=False)
    assert result.returncode != 0
    assert SERVICE not in result.stdout


def test_buf_curl_calls_get_backend_info(curl):
    result = curl(f"/{SERVICE}/GetBackendInfo", data="{}")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["contractVersion"] == "1.0"
    assert info["backendKind"] == "sqlite"
    assert "CAPABILITY_AUTHENTICATION" in info["capabilities"]


def test_buf_curl_calls_the_health_check_without_a_call_token(curl):
    # The reflection stream carries the token (reflection is guarded); the health call itself carries none.
    for service in ("", SERVICE):
        result = curl("/grpc.health.v1.Health/Check", data=json.dumps({"service": service}), auth=False)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"status": "SERVING"}


def test_buf_curl_writes_reads_and_gets_contract_errors(curl, db_path):
    spec = {"instructions": "be brief", "model": {"provider": "ollama", "model": "llama3"}}
    applied = curl(f"/{SERVICE}/ApplyAgentInstance", data=json.dumps({"name": "helper", "spec": spec}))
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["outcome"] == "APPLY_OUTCOME_CREATED"

    fetched = curl(f"/{SERVICE}/GetAgentInstance", data=json.dumps({"agentInstance": {"name": "helper"}}))
    assert json.loads(fetched.stdout)["agentInstance"]["spec"] == spec

    missing = curl(f"/{SERVICE}/GetExecution", data=json.dumps({"executionId": "exe-nope"}))
    assert missing.returncode == 5 << 3  # buf curl exits with the gRPC code shifted left by three
    assert "not_found" in missing.stdout + missing.stderr

    unauthenticated = curl(
        f"/{SERVICE}/ApplyAgentInstance", data=json.dumps({"name": "other", "spec": spec}), auth=False
    )
    assert unauthenticated.returncode == 16 << 3
    assert count_rows(db_path, "agent_instances") == 1


GRPCIO_CLIENT = textwrap.dedent(
    """
    import json, sys
    import grpc
    from stigmer.backend.v1 import backend_service_pb2_grpc, request_response_pb2 as rr, agent_instance_pb2 as ai
    from stigmer.backend.v1 import execution_pb2 as ex

    assert backend_service_pb2_grpc.__file__.startswith(sys.argv[3]), backend_service_pb2_grpc.__file__
    assert "stigmer_backend.gen" not in sys.modules
    endpoint, token = sys.argv[1], sys.argv[2]
    auth = [("authorization", "Bearer " + token)]
    out = {}
    with grpc.insecure_channel(endpoint) as channel:
        stub = backend_service_pb2_grpc.BackendServiceStub(channel)
        info = stub.GetBackendInfo(rr.GetBackendInfoRequest(), metadata=auth, timeout=10)
        out["contract_version"] = info.contract_version
        spec = ai.AgentInstanceSpec(instructions="be brief", model=ai.ModelConfig(provider="ollama", model="llama3"))
        applied = stub.ApplyAgentInstance(rr.ApplyAgentInstanceRequest(name="helper", spec=spec), metadata=auth)
        out["apply_outcome"] = ai.ApplyOutcome.Name(applied.outcome)
        request = rr.CreateExecutionRequest(
            request_id="grpcio-1",
            agent_instance=ai.AgentInstanceRef(name="helper"),
            input=ex.ExecutionInput(message="hello"),
        )
        first = stub.CreateExecution(request, metadata=auth)
        again = stub.CreateExecution(request, metadata=auth)
        out["created"] = [first.created, again.created]
        out["same_execution"] = first.execution.id == again.execution.id
        watch = stub.WatchExecution(rr.WatchExecutionRequest(execution_id=first.execution.id), metadata=auth)
        state = next(watch)
        out["watched_phase"] = ex.ExecutionPhase.Name(state.execution.status.phase)
        watch.cancel()
        cancelled = stub.CancelExecution(
            rr.CancelExecutionRequest(execution_id=first.execution.id, reason="done"), metadata=auth
        )
        out["cancelled_phase"] = ex.ExecutionPhase.Name(cancelled.execution.status.phase)
        for name, call in [
            ("not_found", lambda: stub.GetExecution(rr.GetExecutionRequest(execution_id="exe-nope"), metadata=auth)),
            ("invalid", lambda: stub.GetExecution(rr.GetExecutionRequest(execution_id=""), metadata=auth)),
            ("no_token", lambda: stub.GetBackendInfo(rr.GetBackendInfoRequest())),
        ]:
            try:
                call()
                out[name] = "OK"
            except grpc.RpcError as error:
                out[name] = error.code().name
    print(json.dumps(out))
    """
)


def test_a_grpcio_tools_client_generated_from_the_protos_gets_correct_answers(served, token, tmp_path, db_path):
    generated = tmp_path / "grpcio"
    generated.mkdir()
    protos = sorted(str(path.relative_to(REPO / "proto")) for path in (REPO / "proto").rglob("*.proto"))
    subprocess.run(
        [*PROTOC, f"--python_out={generated}", f"--grpc_python_out={generated}", *protos],
        check=True,
        cwd=REPO / "proto",
        timeout=120,
    )
    script = generated / "client.py"
    script.write_text(GRPCIO_CLIENT)
    result = subprocess.run(
        [sys.executable, str(script), served.endpoint, token, str(generated)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=generated,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "contract_version": "1.0",
        "apply_outcome": "APPLY_OUTCOME_CREATED",
        "created": [True, False],
        "same_execution": True,
        "watched_phase": "EXECUTION_PHASE_PENDING",
        "cancelled_phase": "EXECUTION_PHASE_CANCELLED",
        "not_found": "NOT_FOUND",
        "invalid": "INVALID_ARGUMENT",
        "no_token": "UNAUTHENTICATED",
    }
    assert count_rows(db_path, "executions") == 1
