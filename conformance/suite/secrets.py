"""Secrets: stored write-only, resolved only into the context of a running execution, never leaked."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import betterproto2
import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import (
    Client,
    expect_status,
    leaked_values,
    present,
    remember_secret_value,
    unique_secret_name,
)
from stigmer_backend.conformance.scenarios import (
    OTHER_RUNNER,
    RUNNER,
    apply_agent,
    claim,
    create_execution,
    execution_of,
    move,
    spec,
    wait_for_backend_clock,
)
from stigmer_backend.gen.stigmer.backend import v1 as pb

pytestmark = pytest.mark.requires_capability(pb.Capability.SECRETS)
Phase = pb.ExecutionPhase


def _put(client: Client, name: str | None = None, value: str | None = None) -> tuple[str, str, pb.PutSecretResponse]:
    name = name or unique_secret_name()
    value = value or f"s3cr3t-{name}-✓"
    remember_secret_value(value)
    return name, value, client.put_secret(pb.PutSecretRequest(name=name, value=value))


def _agent_using(
    client: Client,
    *names: str,
    credentials: str | None = None,
    extra_env: Iterable[pb.EnvironmentVariable] = (),
) -> pb.AgentInstance:
    env = [pb.EnvironmentVariable(name=f"V_{n}", value=f"Bearer ${{.secrets.{n}}}") for n in names]
    model = pb.ModelConfig(
        provider="openai", model="gpt-4o", credentials=f"${{ .secrets.{credentials} }}" if credentials else ""
    )
    return apply_agent(client, spec(model=model, env=[*env, *extra_env]))


def _stored(response: pb.PutSecretResponse) -> pb.Secret:
    return present(response.secret, "PutSecretResponse.secret", "the secret's metadata as stored")


def _put_time(secret: pb.Secret) -> datetime:
    return present(secret.update_time, "Secret.update_time", "when the value was last put")


def _snapshot(context: pb.GetExecutionContextResponse) -> pb.AgentInstance:
    return present(context.agent_instance, "GetExecutionContextResponse.agent_instance", "the snapshot it runs")


def _context(client: Client, execution: pb.Execution, runner: str = RUNNER) -> pb.GetExecutionContextResponse:
    return client.get_execution_context(pb.GetExecutionContextRequest(execution_id=execution.id, runner_id=runner))


class TestPutSecret:
    def test_a_put_of_the_same_value_is_a_write_like_any_other(self, client: Client) -> None:
        """`version` + 1 and `created` false whatever the value: a put never reveals whether the value changed."""
        name, value, first = _put(client)
        same = _put(client, name, value)[2]
        other = _put(client, name, value + "-changed")[2]
        assert (same.created, _stored(same).version) == (False, _stored(first).version + 1)
        assert (other.created, _stored(other).version) == (False, _stored(first).version + 2)

    def test_a_running_execution_sees_a_new_value_at_its_next_context(self, client: Client) -> None:
        """After a put, the next `GetExecutionContext` of an execution already running returns the new value."""
        name, value, _ = _put(client)
        running = claim(client, create_execution(client, _agent_using(client, name)))
        assert _context(client, running).secrets == {name: value}
        _put(client, name, "the-rotated-value")
        assert _context(client, running).secrets == {name: "the-rotated-value"}

    def test_update_time_moves_on_a_replacing_put(self, client: Client) -> None:
        """A later put: `update_time` is when the value was last put; `create_time` kept, `version` + 1."""
        name, _, first = _put(client)
        before = _stored(first)
        assert before.update_time == before.create_time, "update_time equals create_time until a new put"
        wait_for_backend_clock(client, _put_time(before))
        second = _stored(_put(client, name, "a-newer-value")[2])
        assert second.create_time == before.create_time and second.version == before.version + 1
        assert _put_time(second) > _put_time(before), "update_time did not move on a replacing put"
        listed = next(s for s in client.list_secrets(pb.ListSecretsRequest(page_size=1000)).secrets if s.name == name)
        assert listed == second

    def test_longest_name_and_value_are_accepted(self, client: Client) -> None:
        """A 128-character name and a 65,536-byte value are valid."""
        name = (unique_secret_name("L") + "_" * 128)[:128]
        _, _, response = _put(client, name, "v" * 65_536)
        assert response.created and _stored(response).name == name

    def test_put_returns_metadata_only(self, client: Client) -> None:
        """`PutSecretResponse`: metadata and `created`, never the value."""
        name, value, response = _put(client)
        assert response.created and _stored(response).name == name and _stored(response).version == 1
        assert value.encode() not in bytes(response) and value not in response.to_json()

    def test_a_second_put_replaces_and_bumps_version(self, client: Client) -> None:
        """Putting an existing name: `created` false, `version` + 1, the new value used from then on."""
        name, _, first = _put(client)
        _, new_value, second = _put(client, name, "rotated-value-xyz")
        assert (second.created, _stored(second).version) == (False, 2)
        assert _stored(second).create_time == _stored(first).create_time
        running = claim(client, create_execution(client, _agent_using(client, name)))
        assert _context(client, running).secrets == {name: new_value}


class TestListSecrets:
    def test_lists_names_and_never_values(self, client: Client) -> None:
        """`ListSecrets` pages hold each secret once in name order, with no value anywhere."""
        mine = {_put(client)[0] for _ in range(4)}
        names, token = [], ""
        while True:
            page = client.list_secrets(pb.ListSecretsRequest(page_size=2, page_token=token))
            assert not leaked_values(bytes(page)), "a secret value appears in ListSecrets"
            names += [s.name for s in page.secrets]
            token = page.next_page_token
            if not token:
                break
        assert names == sorted(names, key=lambda n: n.encode()) and len(names) == len(set(names))
        assert mine <= set(names)


class TestDeleteSecret:
    def test_deleted_secret_is_gone(self, client: Client) -> None:
        """Deleted: not listed; deleting again is NOT_FOUND."""
        name, _, _ = _put(client)
        client.delete_secret(pb.DeleteSecretRequest(name=name))
        with expect_status(Status.NOT_FOUND):
            client.delete_secret(pb.DeleteSecretRequest(name=name))

    def test_a_context_needing_a_deleted_secret_is_failed_precondition(self, client: Client) -> None:
        """A referenced secret that no longer exists: FAILED_PRECONDITION naming it."""
        name, _, _ = _put(client)
        running = claim(client, create_execution(client, _agent_using(client, name)))
        client.delete_secret(pb.DeleteSecretRequest(name=name))
        with expect_status(Status.FAILED_PRECONDITION, naming=name):
            _context(client, running)
        _put(client, name, "put-again")
        assert _context(client, running).secrets == {name: "put-again"}, "the secret was put again"


class TestSecretsInContext:
    def test_context_resolves_env_and_credentials(self, client: Client) -> None:
        """The context substitutes references in `env` and returns exactly the referenced values."""
        token, key = _put(client), _put(client)
        literal = pb.EnvironmentVariable(name="PLAIN", value="no secrets here")
        agent = _agent_using(client, token[0], credentials=key[0], extra_env=[literal])
        running = claim(client, create_execution(client, agent))
        context = _context(client, running)
        assert context.secrets == {token[0]: token[1], key[0]: key[1]}
        assert context.environment == {f"V_{token[0]}": f"Bearer {token[1]}", "PLAIN": "no secrets here"}
        assert _snapshot(context).spec == agent.spec, "the snapshot keeps references unresolved"

    def test_a_context_never_holds_another_agents_secrets(self, client: Client) -> None:
        """Two agents with different secrets: each context has only its own."""
        mine, theirs = _put(client), _put(client)
        running = claim(client, create_execution(client, _agent_using(client, mine[0])))
        claim(client, create_execution(client, _agent_using(client, theirs[0])))
        context = _context(client, running)
        assert set(context.secrets) == {mine[0]}
        assert theirs[1].encode() not in bytes(context)

    def test_only_references_in_env_and_credentials_are_resolved(self, client: Client) -> None:
        """`secrets` holds exactly those referenced in `env` and `model.credentials`: references written in
        `instructions`, `model.model` or `model.endpoint` are literal text, never resolved or returned."""
        env, credentials, instructions, model, endpoint = (_put(client) for _ in range(5))
        agent_spec = spec(
            instructions=f"Use ${{.secrets.{instructions[0]}}} wisely.",
            model=pb.ModelConfig(
                provider="openai",
                model=f"gpt-${{.secrets.{model[0]}}}",
                endpoint=f"https://llm.example.com/${{.secrets.{endpoint[0]}}}",
                credentials=f"${{.secrets.{credentials[0]}}}",
            ),
            env=[pb.EnvironmentVariable(name="TOKEN", value=f"${{.secrets.{env[0]}}}")],
        )
        running = claim(client, create_execution(client, apply_agent(client, agent_spec)))
        context = _context(client, running)
        assert context.secrets == {env[0]: env[1], credentials[0]: credentials[1]}, sorted(context.secrets)
        assert context.environment == {"TOKEN": env[1]}
        assert _snapshot(context).spec == agent_spec, "the snapshot is returned as applied, references unresolved"
        for name, value, _ in (instructions, model, endpoint):
            assert value.encode() not in bytes(context), f"the value of {name}, referenced outside env, was returned"

    def test_references_with_blanks_inside_the_braces_are_resolved(self, client: Client) -> None:
        """`${ .secrets.NAME }` with spaces or tabs inside the braces is a reference like `${.secrets.NAME}`."""
        first, second = _put(client), _put(client)
        variables = [
            pb.EnvironmentVariable(name="SPACED", value=f"${{ .secrets.{first[0]} }}"),
            pb.EnvironmentVariable(name="TABBED", value=f"<${{\t.secrets.{second[0]}\t \t}}>"),
            pb.EnvironmentVariable(name="OTHER", value="${.SECRETS.X} ${secrets.X} $.secrets.X"),
        ]
        running = claim(client, create_execution(client, apply_agent(client, spec(env=variables))))
        context = _context(client, running)
        assert context.environment == {"SPACED": first[1], "TABBED": f"<{second[1]}>", "OTHER": variables[2].value}
        assert context.secrets == {first[0]: first[1], second[0]: second[1]}

    def test_secret_names_are_case_sensitive(self, client: Client) -> None:
        """`Secret.name` is case-sensitive: names differing only in case are two secrets."""
        lower = unique_secret_name("case").lower()
        upper = lower.upper()
        _put(client, lower, "value-of-the-lower-case-name")
        _, _, second = _put(client, upper, "value-of-the-upper-case-name")
        assert second.created, "a name differing only in case replaced another secret"
        agent = _agent_using(client, lower, upper)
        context = _context(client, claim(client, create_execution(client, agent)))
        assert context.secrets == {lower: "value-of-the-lower-case-name", upper: "value-of-the-upper-case-name"}

    def test_missing_secret_is_named_and_no_value_revealed(self, client: Client) -> None:
        """A reference to a secret that does not exist: FAILED_PRECONDITION naming it, no value in the message."""
        present = _put(client)
        missing = unique_secret_name("MISSING")
        running = claim(client, create_execution(client, _agent_using(client, present[0], missing)))
        with expect_status(Status.FAILED_PRECONDITION, naming=missing):
            _context(client, running)

    @pytest.mark.parametrize("phase", [Phase.PENDING, Phase.SUCCEEDED, Phase.CANCELLED], ids=lambda p: p.name)
    def test_no_values_unless_running(self, client: Client, phase: pb.ExecutionPhase) -> None:
        """Only a RUNNING execution has a context; other phases are FAILED_PRECONDITION."""
        name = _put(client)[0]
        execution = create_execution(client, _agent_using(client, name))
        if phase == Phase.SUCCEEDED:
            execution = move(client, claim(client, execution), phase)
        elif phase == Phase.CANCELLED:
            execution = execution_of(client.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id)))
        with expect_status(Status.FAILED_PRECONDITION):
            _context(client, execution)

    def test_no_values_for_another_runner(self, client: Client) -> None:
        """Only the lease holder gets values."""
        name = _put(client)[0]
        running = claim(client, create_execution(client, _agent_using(client, name)))
        with expect_status(Status.FAILED_PRECONDITION):
            _context(client, running, runner=OTHER_RUNNER)

    def test_no_other_rpc_returns_a_value(self, client: Client) -> None:
        """Values never appear in any other response: agent, execution, lists, watch, updates."""
        name, value, _ = _put(client)
        agent = _agent_using(client, name, credentials=name)
        execution = create_execution(client, agent)
        running = claim(client, execution)
        responses = [
            client.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(id=agent.id))),
            client.list_agent_instances(pb.ListAgentInstancesRequest(page_size=1000)),
            client.get_execution(pb.GetExecutionRequest(execution_id=execution.id)),
            client.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id)),
            client.update_execution_status(pb.UpdateExecutionStatusRequest(execution_id=running.id, phase=Phase.RUNNING, runner_id=RUNNER)),
            client.get_backend_info(pb.GetBackendInfoRequest()),
        ]  # fmt: skip
        done = move(client, running, Phase.SUCCEEDED)
        responses += [pb.WatchExecutionResponse(execution=s) for s in client.watch(done.id).finish()]
        for response in responses:
            assert value.encode() not in bytes(response), f"{type(response).__name__} carries a secret value"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: ("put_secret", pb.PutSecretRequest(name="", value="v")), "name"),
        (lambda: ("put_secret", pb.PutSecretRequest(name="bad-name", value="v")), "name"),
        (lambda: ("put_secret", pb.PutSecretRequest(name="N" * 129, value="v")), "name"),
        (lambda: ("put_secret", pb.PutSecretRequest(name="EMPTY_VALUE")), "value"),
        (lambda: ("put_secret", pb.PutSecretRequest(name="HUGE", value="v" * 65_537)), "value"),
        (lambda: ("delete_secret", pb.DeleteSecretRequest(name="")), "name"),
        (lambda: ("list_secrets", pb.ListSecretsRequest(page_size=-1)), "page_size"),
    ],
    ids=["PutSecret/name-missing", "PutSecret/name-invalid", "PutSecret/name-129-chars", "PutSecret/value-empty",
         "PutSecret/value-over-64KiB", "DeleteSecret/name-missing", "ListSecrets/page_size-negative"],
)  # fmt: skip
def test_invalid_request(client: Client, call: Callable[[], tuple[str, betterproto2.Message]], field: str) -> None:
    """The first invalid field: INVALID_ARGUMENT naming it (a value is never quoted)."""
    rpc, request = call()
    with expect_status(Status.INVALID_ARGUMENT, naming=field) as caught:
        getattr(client, rpc)(request)
    assert "v" * 100 not in (caught.error.message or "")
