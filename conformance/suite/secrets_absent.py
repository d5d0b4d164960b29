"""Backends without `CAPABILITY_SECRETS`: the secret RPCs answer UNIMPLEMENTED, references fail cleanly."""

from __future__ import annotations

import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status
from stigmer_backend.conformance.scenarios import RUNNER, apply_agent, claim, create_execution, spec
from stigmer_backend.gen.stigmer.backend import v1 as pb


@pytest.fixture(autouse=True)
def _only_without_secrets(capabilities: set[int]) -> None:
    if pb.Capability.SECRETS in capabilities:
        pytest.skip("optional: the backend supports secrets; secrets.py checks them")


def test_secret_rpcs_are_unimplemented(client: Client) -> None:
    """`PutSecret`, `ListSecrets`, `DeleteSecret`: UNIMPLEMENTED."""
    for rpc, request in (
        ("put_secret", pb.PutSecretRequest(name="A", value="b")),
        ("list_secrets", pb.ListSecretsRequest()),
        ("delete_secret", pb.DeleteSecretRequest(name="A")),
    ):
        with expect_status(Status.UNIMPLEMENTED):
            getattr(client, rpc)(request)


def test_a_context_referencing_a_secret_is_failed_precondition(client: Client) -> None:
    """`GetExecutionContext` for an agent that references a secret: FAILED_PRECONDITION."""
    agent = apply_agent(client, spec(env=[pb.EnvironmentVariable(name="T", value="${.secrets.TOKEN}")]))
    running = claim(client, create_execution(client, agent))
    with expect_status(Status.FAILED_PRECONDITION, naming="TOKEN"):
        client.get_execution_context(pb.GetExecutionContextRequest(execution_id=running.id, runner_id=RUNNER))
