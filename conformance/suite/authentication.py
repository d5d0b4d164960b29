"""Authentication: with `CAPABILITY_AUTHENTICATION`, a call without valid credentials is `UNAUTHENTICATED`.

Every RPC, unary and streaming, is called twice through the same endpoint —
with no `authorization` metadata and with a wrong bearer token — using a
request that would succeed with the right token; the call must fail with
`UNAUTHENTICATED` and leave everything as it was ("before it reads or writes
anything").
"""

from __future__ import annotations

from collections.abc import Callable

import betterproto2
import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id, unique_name, unique_secret_name
from stigmer_backend.conformance.run import ConformanceRun
from stigmer_backend.conformance.scenarios import RUNNER, apply_agent, claim, create_execution
from stigmer_backend.gen.stigmer.backend import v1 as pb

pytestmark = pytest.mark.requires_capability(pb.Capability.AUTHENTICATION)
Phase = pb.ExecutionPhase
CREDENTIALS = {"no-token": None, "wrong-token": "conformance-wrong-token-0000"}


@pytest.fixture(params=list(CREDENTIALS), ids=list(CREDENTIALS))
def stranger(request: pytest.FixtureRequest, stigmer_run: ConformanceRun) -> Client:
    """A client of the same endpoint presenting no token, or a wrong one."""
    target = stigmer_run.target
    backend = None if target is None else target.as_caller(CREDENTIALS[request.param])
    assert backend is not None, (
        "the backend reports CAPABILITY_AUTHENTICATION but the suite reaches it in-process, "
        "where no call carries credentials: run the suite against its endpoint"
    )
    return Client(backend, stigmer_run.loop)


def _agent(client: Client) -> pb.AgentInstance:
    return apply_agent(client)


def _secret(client: Client, capabilities: set[int]) -> str:
    name = unique_secret_name()
    if pb.Capability.SECRETS in capabilities:
        client.put_secret(pb.PutSecretRequest(name=name, value="conformance-auth-value"))
    return name


def _get(client: Client, execution: pb.Execution) -> pb.Execution | None:
    return client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)).execution


def _exists(client: Client, name: str) -> bool:
    try:
        client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name)))
    except Exception:  # NOT_FOUND: the stranger's apply wrote nothing
        return False
    return True


Check = Callable[[Client], None]
"""Asserts, through the suite's own client, that the refused call changed nothing."""
Setup = Callable[[Client, set[int]], tuple[betterproto2.Message, Check]]
"""Prepares a request that would succeed with the right token, and its ``Check``."""


# RPC -> (setup(client, capabilities) -> (request, check_unchanged(client)))
def _create_execution(client: Client, _: set[int]) -> tuple[betterproto2.Message, Check]:
    agent = _agent(client)
    ref = pb.AgentInstanceRef(name=agent.name)
    request = pb.CreateExecutionRequest(
        request_id=request_id(), agent_instance=ref, input=pb.ExecutionInput(message="x")
    )

    def unchanged(c: Client) -> None:
        assert not c.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id)).executions

    return request, unchanged


def _update(client: Client, _: set[int]) -> tuple[betterproto2.Message, Check]:
    execution = create_execution(client)
    request = pb.UpdateExecutionStatusRequest(execution_id=execution.id, phase=Phase.RUNNING, runner_id=RUNNER)
    return request, lambda c: _check_same(c, execution)


def _cancel(client: Client, _: set[int]) -> tuple[betterproto2.Message, Check]:
    execution = create_execution(client)
    return pb.CancelExecutionRequest(execution_id=execution.id), lambda c: _check_same(c, execution)


def _check_same(client: Client, execution: pb.Execution) -> None:
    assert _get(client, execution) == execution, "a call without valid credentials changed the execution"


def _context(client: Client, _: set[int]) -> tuple[betterproto2.Message, Check]:
    running = claim(client, create_execution(client))
    return pb.GetExecutionContextRequest(execution_id=running.id, runner_id=RUNNER), lambda c: _check_same(c, running)


def _apply(client: Client, _: set[int]) -> tuple[betterproto2.Message, Check]:
    name = unique_name()

    def unchanged(c: Client) -> None:
        assert not _exists(c, name), "a call without valid credentials created an agent instance"

    return pb.ApplyAgentInstanceRequest(name=name, spec=_agent(client).spec), unchanged


def _delete_agent(client: Client, _: set[int]) -> tuple[betterproto2.Message, Check]:
    agent = _agent(client)

    def unchanged(c: Client) -> None:
        assert _exists(c, agent.name), "a call without valid credentials deleted an agent instance"

    return pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=agent.id)), unchanged


def _secret_listed(client: Client, name: str, capabilities: set[int]) -> bool | None:
    if pb.Capability.SECRETS not in capabilities:
        return None
    return name in {s.name for s in client.list_secrets(pb.ListSecretsRequest(page_size=1000)).secrets}


def _put_secret(client: Client, capabilities: set[int]) -> tuple[betterproto2.Message, Check]:
    name = unique_secret_name()

    def unchanged(c: Client) -> None:
        assert not _secret_listed(c, name, capabilities), "a call without valid credentials stored a secret"

    return pb.PutSecretRequest(name=name, value="conformance-auth-value"), unchanged


def _delete_secret(client: Client, capabilities: set[int]) -> tuple[betterproto2.Message, Check]:
    name = _secret(client, capabilities)

    def unchanged(c: Client) -> None:
        assert _secret_listed(c, name, capabilities) in (None, True), (
            "a call without valid credentials deleted a secret"
        )

    return pb.DeleteSecretRequest(name=name), unchanged


def _nothing(_client: Client) -> None:
    return None


CALLS: dict[str, tuple[str, Setup]] = {
    "GetBackendInfo": ("get_backend_info", lambda c, _: (pb.GetBackendInfoRequest(), _nothing)),
    "CreateExecution": ("create_execution", _create_execution),
    "GetExecution": ("get_execution", lambda c, _: (pb.GetExecutionRequest(execution_id=create_execution(c).id), _nothing)),
    "ListExecutions": ("list_executions", lambda c, _: (pb.ListExecutionsRequest(), _nothing)),
    "UpdateExecutionStatus": ("update_execution_status", _update),
    "CancelExecution": ("cancel_execution", _cancel),
    "GetExecutionContext": ("get_execution_context", _context),
    "GetAgentInstance": ("get_agent_instance", lambda c, _: (pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=_agent(c).id)), _nothing)),
    "ApplyAgentInstance": ("apply_agent_instance", _apply),
    "ListAgentInstances": ("list_agent_instances", lambda c, _: (pb.ListAgentInstancesRequest(), _nothing)),
    "DeleteAgentInstance": ("delete_agent_instance", _delete_agent),
    "PutSecret": ("put_secret", _put_secret),
    "ListSecrets": ("list_secrets", lambda c, _: (pb.ListSecretsRequest(), _nothing)),
    "DeleteSecret": ("delete_secret", _delete_secret),
}  # fmt: skip


class TestUnauthenticated:
    @pytest.mark.parametrize("rpc", list(CALLS))
    def test_a_unary_call_without_valid_credentials(
        self, client: Client, stranger: Client, capabilities: set[int], rpc: str
    ) -> None:
        """No token or a wrong one: UNAUTHENTICATED, and nothing read or written."""
        method, setup = CALLS[rpc]
        request, unchanged = setup(client, capabilities)
        with expect_status(Status.UNAUTHENTICATED):
            getattr(stranger, method)(request)
        unchanged(client)

    def test_a_watch_without_valid_credentials(self, client: Client, stranger: Client) -> None:
        """`WatchExecution` (streaming): UNAUTHENTICATED before any message."""
        execution = create_execution(client)
        watch = stranger.watch(execution.id)
        assert watch.wait_until(lambda w: w.done or bool(w.states)), (
            "the watch of an unauthenticated caller did not end"
        )
        assert watch.states == [], "a caller without valid credentials received an execution state"
        with expect_status(Status.UNAUTHENTICATED):
            watch.reraise("a call without valid credentials must fail with UNAUTHENTICATED (CAPABILITY_AUTHENTICATION)")

    def test_credentials_are_checked_before_the_request(self, stranger: Client) -> None:
        """An invalid request without valid credentials: UNAUTHENTICATED, not INVALID_ARGUMENT."""
        with expect_status(Status.UNAUTHENTICATED):
            stranger.get_execution(pb.GetExecutionRequest())
        with expect_status(Status.UNAUTHENTICATED):
            stranger.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="Not A Valid Name"))
