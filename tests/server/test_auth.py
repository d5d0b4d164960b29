"""Bearer-token authentication of ``stigmer server``: refused calls never reach the backend."""

from __future__ import annotations

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.wire import parse_endpoint
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.builders import SPEC
from tests.remote_fixtures import count_rows

WRITES = [
    ("apply_agent_instance", pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC)),
    (
        "create_execution",
        pb.CreateExecutionRequest(
            request_id="r-1",
            agent_instance=pb.AgentInstanceRef(name="helper"),
            input=pb.ExecutionInput(message="hi"),
        ),
    ),
    ("put_secret", pb.PutSecretRequest(name="API_KEY", value="s3cr3t-value")),
]


def _tables_are_empty(db) -> bool:
    return all(count_rows(db, table) == 0 for table in ("agent_instances", "executions", "secrets"))


@pytest.mark.parametrize("credential", [None, "wrong-token-of-enough-length", "almost"], ids=["none", "wrong", "short"])
async def test_calls_without_a_valid_token_fail_unauthenticated_and_write_nothing(served, db_path, credential):
    async with CloudBackend(served.endpoint, token=credential) as backend:
        for rpc, request in WRITES:
            with pytest.raises(GRPCError) as caught:
                await getattr(backend, rpc)(request)
            assert caught.value.status == Status.UNAUTHENTICATED, rpc
        with pytest.raises(GRPCError) as caught:
            async for _ in backend.watch_execution(pb.WatchExecutionRequest(execution_id="exe-1")):
                pass
        assert caught.value.status == Status.UNAUTHENTICATED
        with pytest.raises(GRPCError) as caught:
            await backend.get_backend_info(pb.GetBackendInfoRequest())
        assert caught.value.status == Status.UNAUTHENTICATED
    assert _tables_are_empty(db_path)


async def test_the_right_token_is_let_through_and_writes(served, db_path, token):
    async with CloudBackend(served.endpoint, token=token) as backend:
        for rpc, request in WRITES:
            await getattr(backend, rpc)(request)
    assert (count_rows(db_path, "agent_instances"), count_rows(db_path, "executions")) == (1, 1)
    assert count_rows(db_path, "secrets") == 1


@pytest.mark.parametrize(
    ("headers", "admitted"),
    [
        (lambda t: [("authorization", f"Bearer {t}")], True),
        (lambda t: [("authorization", f"bearer {t}")], True),  # the scheme is case-insensitive
        (lambda t: [("authorization", t)], False),  # no scheme
        (lambda t: [("authorization", f"Basic {t}")], False),
        (lambda t: [("authorization", f"Bearer {t} ")], False),
        (lambda t: [("authorization", f"Bearer {t}"), ("authorization", f"Bearer {t}")], False),
        (lambda t: [("x-token", t)], False),
    ],
    ids=["bearer", "lowercase-scheme", "no-scheme", "basic", "trailing-space", "twice", "other-header"],
)
async def test_only_one_exact_bearer_header_is_accepted(served, token, headers, admitted):
    host, port = parse_endpoint(served.endpoint)
    channel = Channel(host, port)
    try:
        stub = pb.BackendServiceStub(channel)
        call = stub.get_backend_info(pb.GetBackendInfoRequest(), metadata=headers(token))
        if admitted:
            assert (await call).contract_version == "1.0"
        else:
            with pytest.raises(GRPCError) as caught:
                await call
            assert caught.value.status == Status.UNAUTHENTICATED
            assert token not in (caught.value.message or "")
    finally:
        channel.close()


async def test_health_checks_need_no_token(served):
    host, port = parse_endpoint(served.endpoint)
    channel = Channel(host, port)
    try:
        health = HealthStub(channel)
        for service in ("", "stigmer.backend.v1.BackendService"):
            reply = await health.Check(HealthCheckRequest(service=service))
            assert reply.status == HealthCheckResponse.SERVING, service
        with pytest.raises(GRPCError) as caught:
            await health.Check(HealthCheckRequest(service="no.such.Service"))
        assert caught.value.status == Status.NOT_FOUND
    finally:
        channel.close()


async def test_backend_info_reports_authentication_only_when_the_server_requires_a_token(
    served, token, db_path, server_env, tmp_path
):
    async with CloudBackend(served.endpoint, token=token) as backend:
        guarded = await backend.get_backend_info(pb.GetBackendInfoRequest())
    with ServerProcess.start(["--db", str(tmp_path / "open.db")], env=server_env) as open_server:
        async with CloudBackend(open_server.endpoint) as backend:
            open_info = await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert pb.Capability.AUTHENTICATION in guarded.capabilities
    assert pb.Capability.AUTHENTICATION not in open_info.capabilities
    assert guarded.capabilities.count(pb.Capability.AUTHENTICATION) == 1
    assert pb.Capability.DURABLE_STORAGE in guarded.capabilities
    assert (guarded.backend_kind, open_info.backend_kind) == ("sqlite", "sqlite")


async def test_the_token_never_appears_in_the_server_log(served, token):
    async with CloudBackend(served.endpoint, token="wrong-token-of-enough-length") as backend:
        with pytest.raises(GRPCError):
            await backend.get_backend_info(pb.GetBackendInfoRequest())
    async with CloudBackend(served.endpoint, token=token) as backend:
        await backend.get_backend_info(pb.GetBackendInfoRequest())
        assert token not in repr(backend)
    log = served.stderr_text()
    assert "invalid bearer token" in log
    assert token not in log and "wrong-token-of-enough-length" not in log
