"""Backends with one deliberate contract violation each: the suite must fail every one, at a named test.

Each mutant is the conforming ``MemoryBackend`` with a single override, so a
failing run can only come from that defect; ``@breaks`` records which class of
sentence it violates and the conformance test that must catch it. Overrides
never patch shared modules (``stigmer_backend.backends.rules``): the harness runs
every mutant in one process, one after the other. Mutants of the endpoint
(authentication) are servers, in ``broken_server.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stigmer_backend.backends.memory import MemoryBackend
from stigmer_backend.backends.rules import errors, executions, paging, secret_refs, validation
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # the class of contract sentence it breaks
    must_fail: str  # the conformance test id that must fail
    violation: str


MUTANTS: list[Mutant] = []


def breaks(kind: str, must_fail: str):
    """Registers the decorated class as a mutant of ``kind`` that ``must_fail`` must catch."""

    def register(cls):
        MUTANTS.append(Mutant(cls.__name__, kind, must_fail, (cls.__doc__ or "").strip().splitlines()[0]))
        return cls

    return register


# -- state machine -----------------------------------------------------------------------------


@breaks("state machine", "state_machine/UpdateExecutionStatus/transition/SUCCEEDED->RUNNING/rejected")
class TerminalRerun(MemoryBackend):
    """Lets a SUCCEEDED execution be claimed and run again."""

    async def update_execution_status(self, message):
        current = self._executions.get(message.execution_id)
        if (
            current is not None
            and current.status.phase == pb.ExecutionPhase.SUCCEEDED
            and message.phase == pb.ExecutionPhase.RUNNING
        ):
            rerun = dataclasses.replace(
                current,
                status=pb.ExecutionStatus(phase=pb.ExecutionPhase.RUNNING, runner_id=message.runner_id),
                version=current.version + 1,
            )
            self._store(rerun)
            return pb.UpdateExecutionStatusResponse(execution=rerun)
        return await super().update_execution_status(message)


@breaks("state machine", "state_machine/UpdateExecutionStatus/wrong_expected_version_is_aborted_and_writes_nothing")
class IgnoresExpectedVersion(MemoryBackend):
    """Never checks ``expected_version`` (no compare-and-set)."""

    async def update_execution_status(self, message):
        return await super().update_execution_status(dataclasses.replace(message, expected_version=0))


@breaks("state machine", "state_machine/UpdateExecutionStatus/only_the_lease_holder_may_update_a_running_execution")
class AnyRunnerMayUpdate(MemoryBackend):
    """Lets any runner update a RUNNING execution, not only the lease holder."""

    async def update_execution_status(self, message):
        current = self._executions.get(message.execution_id)
        if current is not None and current.status.phase == Phase.RUNNING:
            message = dataclasses.replace(message, runner_id=current.status.runner_id)
        return await super().update_execution_status(message)


@breaks("state machine", "state_machine/CancelExecution/a_terminal_execution_cannot_be_cancelled/SUCCEEDED")
class CancelsTerminalExecutions(MemoryBackend):
    """Answers a cancel of a SUCCEEDED execution with success (and changes nothing)."""

    async def cancel_execution(self, message):
        current = self._executions.get(message.execution_id)
        if current is not None and current.status.phase == Phase.SUCCEEDED:
            return pb.CancelExecutionResponse(execution=current)
        return await super().cancel_execution(message)


@breaks("concurrency", "concurrency/ConcurrentClaims/claimers_with_the_version_they_read_have_one_winner")
class RacyCompareAndSet(MemoryBackend):
    """Reads, yields to other calls, then writes: two claimers with the same version both win."""

    async def update_execution_status(self, message):
        validation.validate_update_execution_status(message)
        current = self._current(message.execution_id)
        await asyncio.sleep(0.01)
        changed = self._store(executions.update_status(current, message, datetime.now(UTC)))
        await self._notify()
        return pb.UpdateExecutionStatusResponse(execution=changed)


# -- idempotency --------------------------------------------------------------------------------


@breaks("idempotency", "executions/CreateExecution/a_retry_returns_the_same_execution")
class DuplicatesOnRetry(MemoryBackend):
    """Creates a new execution for every call, ignoring ``request_id``."""

    async def create_execution(self, message):
        self._by_request.pop(message.request_id, None)
        return await super().create_execution(message)


@breaks("idempotency", "executions/CreateExecution/a_reused_request_id_with_other_input_is_already_exists")
class RetryIgnoresInput(MemoryBackend):
    """Treats any reuse of a ``request_id`` as a retry, whatever the input."""

    async def create_execution(self, message):
        if message.request_id in self._by_request:
            validation.validate_create_execution(message)
            return pb.CreateExecutionResponse(execution=self._current(self._by_request[message.request_id]))
        return await super().create_execution(message)


# -- error-code order ---------------------------------------------------------------------------


@breaks("error-code order", "precedence/UpdateExecutionStatus/invalid_argument_before_not_found")
class LooksUpBeforeValidating(MemoryBackend):
    """Looks the execution up before validating the update (NOT_FOUND wins over INVALID_ARGUMENT)."""

    async def update_execution_status(self, message):
        if message.execution_id:
            self._current(message.execution_id)
        return await super().update_execution_status(message)


@breaks("error-code order", "precedence/CancelExecution/aborted_before_failed_precondition")
class TerminalBeforeVersionOnCancel(MemoryBackend):
    """Checks for a terminal execution before `expected_version` on cancel."""

    async def cancel_execution(self, message):
        validation.validate_cancel_execution(message)
        current = self._current(message.execution_id)
        if current.status.phase in executions.TERMINAL_PHASES:
            raise errors.failed_precondition(f"execution {current.id} is terminal")
        return await super().cancel_execution(message)


@breaks("error-code order", "precedence/UpdateExecutionStatus/aborted_before_another_holder")
class HolderBeforeVersion(MemoryBackend):
    """Checks the lease holder before `expected_version`."""

    async def update_execution_status(self, message):
        validation.validate_update_execution_status(message)
        current = self._current(message.execution_id)
        if current.status.phase == Phase.RUNNING and current.status.runner_id != message.runner_id:
            raise errors.failed_precondition(f"execution {current.id} is held by another runner")
        return await super().update_execution_status(message)


@breaks("error-code order", "precedence/CreateExecution/already_exists_before_not_found")
class AgentBeforeRequestId(MemoryBackend):
    """Looks the agent instance up before deciding an already used `request_id`."""

    async def create_execution(self, message):
        validation.validate_create_execution(message)
        self._agent(message.agent_instance)
        return await super().create_execution(message)


@breaks("error-code order", "precedence/Identifiers/an_impossible_identifier_is_invalid_argument_not_not_found")
class LongIdsAreNotFound(MemoryBackend):
    """Answers NOT_FOUND, not INVALID_ARGUMENT, for an execution id of more than 64 characters."""

    async def get_execution(self, message):
        if len(message.execution_id) > 64:
            raise errors.not_found(f"execution {message.execution_id!r}")
        return await super().get_execution(message)


@breaks("error-code order", "precedence/CreateExecution/invalid_argument_before_already_exists")
class RequestIdBeforeValidating(MemoryBackend):
    """Decides a used `request_id` before validating the request (ALREADY_EXISTS wins over INVALID_ARGUMENT)."""

    async def create_execution(self, message):
        if (
            message.request_id in self._by_request
            and message.input != self._current(self._by_request[message.request_id]).input
        ):
            raise errors.already_exists(f"request_id {message.request_id!r} was used for another request")
        return await super().create_execution(message)


@breaks("error-code order", "precedence/GetExecutionContext/invalid_argument_before_failed_precondition")
class ContextPhaseBeforeValidating(MemoryBackend):
    """Refuses a context for an execution that is not running before validating `runner_id`."""

    async def get_execution_context(self, message):
        current = self._executions.get(message.execution_id)
        if current is not None and current.status.phase != Phase.RUNNING:
            raise errors.failed_precondition(f"execution {message.execution_id!r} is not running")
        return await super().get_execution_context(message)


# -- documented bounds --------------------------------------------------------------------------


@breaks("bounds", "fidelity/AgentInstanceFidelity/spec_survives_apply_get_and_list/max-sizes")
class EnvLimitOffByOne(MemoryBackend):
    """Rejects an `env` of exactly 256 entries (the limit is inclusive)."""

    async def apply_agent_instance(self, message):
        if message.spec is not None and len(message.spec.env) >= 256:
            raise errors.invalid_argument("spec.env", "must have fewer than 256 entries")
        return await super().apply_agent_instance(message)


@breaks("bounds", "validation/invalid_request/UpdateExecutionStatus/runner_id-129-chars")
class RunnerIdUnbounded(MemoryBackend):
    """Accepts a `runner_id` of any length (and keeps its first 128 characters)."""

    async def update_execution_status(self, message):
        return await super().update_execution_status(dataclasses.replace(message, runner_id=message.runner_id[:128]))


@breaks("bounds", "validation/invalid_request/UpdateExecutionStatus/error.details-key-129-bytes")
class DetailKeysUnchecked(MemoryBackend):
    """Does not check the length of `error.details` keys."""

    async def update_execution_status(self, message):
        if message.error is not None and any(len(k) > 128 for k in message.error.details):
            shortened = {k[:128]: v for k, v in message.error.details.items()}
            message = dataclasses.replace(message, error=dataclasses.replace(message.error, details=shortened))
        return await super().update_execution_status(message)


@breaks("bounds", "validation/BoundsAreInclusive/the_shortest_and_longest_leases")
class LeaseBoundsExclusive(MemoryBackend):
    """Rejects a `lease_duration` of exactly 24 hours."""

    async def update_execution_status(self, message):
        if message.lease_duration is not None and message.lease_duration >= timedelta(hours=24):
            raise errors.invalid_argument("lease_duration", "must be less than 24 hours")
        return await super().update_execution_status(message)


@breaks("bounds", "validation/BoundsAreInclusive/env_names_are_case_sensitive")
class EnvNamesCaseInsensitive(MemoryBackend):
    """Treats `TOKEN` and `token` as the same variable name (a duplicate)."""

    async def apply_agent_instance(self, message):
        if message.spec is not None:
            names = [v.name.lower() for v in message.spec.env]
            if len(names) != len(set(names)):
                raise errors.invalid_argument("spec.env[1].name", "appears more than once")
        return await super().apply_agent_instance(message)


@breaks("bounds", "validation/invalid_request/ApplyAgentInstance/spec.model.endpoint-no-host")
class EndpointWithoutHost(MemoryBackend):
    """Accepts an endpoint URL without a host."""

    async def apply_agent_instance(self, message):
        model = message.spec.model if message.spec is not None else None
        if model is not None and model.endpoint in ("http://", "https://"):
            model = dataclasses.replace(model, endpoint="")
            message = dataclasses.replace(message, spec=dataclasses.replace(message.spec, model=model))
        return await super().apply_agent_instance(message)


@breaks("bounds", "precedence/Identifiers/a_64_character_identifier_is_not_found_not_invalid_argument")
class LongestIdIsInvalid(MemoryBackend):
    """Rejects an execution id of exactly 64 characters as INVALID_ARGUMENT (the bound is inclusive)."""

    async def get_execution(self, message):
        if len(message.execution_id) >= 64:
            raise errors.invalid_argument("execution_id", "must be shorter than 64 characters")
        return await super().get_execution(message)


@breaks("bounds", "validation/BoundsAreInclusive/the_deepest_and_largest_structured_data")
class StructDepthExclusive(MemoryBackend):
    """Rejects `input.data` nested exactly 32 deep (the limit is inclusive)."""

    async def create_execution(self, message):
        depth, value = 0, message.input.data if message.input is not None else None
        while value is not None:
            depth += 1
            inner = [v.struct_value for v in value.fields.values() if v.struct_value is not None]
            value = inner[0] if inner else None
        if depth >= 32:
            raise errors.invalid_argument("input.data", "must nest objects less than 32 deep")
        return await super().create_execution(message)


# -- secrets ------------------------------------------------------------------------------------


@breaks("secret scoping", "secrets/SecretsInContext/no_other_rpc_returns_a_value")
class LeaksSecretInGet(MemoryBackend):
    """Returns agent instances with secret references resolved, from an ordinary get."""

    async def get_agent_instance(self, message):
        response = await super().get_agent_instance(message)
        values = {name: value for name, (_, value) in self._secrets.items()}
        agent = response.agent_instance
        env = [
            pb.EnvironmentVariable(name=v.name, value=secret_refs.substitute(v.value, values)) for v in agent.spec.env
        ]
        spec = dataclasses.replace(agent.spec, env=env)
        return pb.GetAgentInstanceResponse(agent_instance=dataclasses.replace(agent, spec=spec))


@breaks("secret scoping", "secrets/SecretsInContext/only_references_in_env_and_credentials_are_resolved")
class ResolvesReferencesAnywhere(MemoryBackend):
    """Returns the secrets referenced anywhere in the spec (instructions, model, endpoint), not only env and
    credentials."""

    async def get_execution_context(self, message):
        response = await super().get_execution_context(message)
        spec = response.agent_instance.spec
        values = {name: value for name, (_, value) in self._secrets.items()}
        for text in (spec.instructions, spec.model.model, spec.model.endpoint):
            for name in secret_refs.find(text):
                if name in values:
                    response.secrets[name] = values[name]
        return response


@breaks("secret scoping", "secrets/SecretsInContext/a_context_never_holds_another_agents_secrets")
class ContextHoldsEverySecret(MemoryBackend):
    """Returns every stored secret in every context."""

    async def get_execution_context(self, message):
        response = await super().get_execution_context(message)
        response.secrets = {name: value for name, (_, value) in self._secrets.items()}
        return response


@breaks("secret scoping", "secrets/SecretsInContext/secret_names_are_case_sensitive")
class SecretNamesCaseInsensitive(MemoryBackend):
    """Stores secret names case-insensitively: `KEY` replaces `key`."""

    async def put_secret(self, message):
        existing = next((n for n in self._secrets if n.lower() == message.name.lower()), None)
        if existing is not None and existing != message.name:
            secret, _ = self._secrets.pop(existing)
            self._secrets[message.name] = (secret, "")
        return await super().put_secret(message)


@breaks("secret scoping", "secrets/PutSecret/a_running_execution_sees_a_new_value_at_its_next_context")
class ContextKeepsOldValues(MemoryBackend):
    """Gives an execution the secret values of its first context forever."""

    def __init__(self) -> None:
        super().__init__()
        self._first: dict[str, pb.GetExecutionContextResponse] = {}

    async def get_execution_context(self, message):
        response = await super().get_execution_context(message)
        return self._first.setdefault(message.execution_id, response)


@breaks("capabilities", "secrets_absent/secret_rpcs_are_unimplemented")
class SecretsWithoutCapability(MemoryBackend):
    """Does not report `CAPABILITY_SECRETS` but serves the secret RPCs anyway."""

    async def get_backend_info(self, message):
        response = await super().get_backend_info(message)
        response.capabilities = [c for c in response.capabilities if c != pb.Capability.SECRETS]
        return response


# -- leases and timeliness ----------------------------------------------------------------------


@breaks("timeliness", "leases/LeaseExpiry/an_expired_lease_fails_the_execution")
class NeverExpiresLeases(MemoryBackend):
    """Keeps an execution RUNNING forever after its runner stops renewing."""

    def _current(self, execution_id):
        if execution_id not in self._executions:
            return super()._current(execution_id)
        return self._executions[execution_id]


@breaks("timestamps and identity", "leases/LeaseExpiry/an_expired_lease_fails_the_execution")
class ExpiryDropsTheOutput(MemoryBackend):
    """Clears the last reported output when a lease expires."""

    def _current(self, execution_id):
        before = self._executions.get(execution_id)
        execution = super()._current(execution_id)
        if before is not None and execution is not before and execution.status.phase == Phase.FAILED:
            execution.status.output = None
        return execution


@breaks("timeliness", "leases/LeaseTimeliness/no_response_shows_an_expired_lease_as_running")
class ListShowsExpiredLeases(MemoryBackend):
    """Applies lease expiry on every RPC but `ListExecutions`, which lists the stored rows as they are."""

    async def list_executions(self, message):
        validation.validate_list_executions(message)
        rows = [self._executions[i] for i in sorted(self._executions, reverse=message.newest_first)]
        rows = [e for e in rows if not message.agent_instance_id or e.agent_instance_id == message.agent_instance_id]
        rows = [e for e in rows if not message.phases or e.status.phase in message.phases]
        return pb.ListExecutionsResponse(executions=rows[: paging.page_size(message.page_size)])


@breaks("timeliness", "leases/LeaseTimeliness/no_response_shows_an_expired_lease_as_running")
class ListHidesExpiredLeases(MemoryBackend):
    """Leaves out of `ListExecutions` the executions whose lease has passed, instead of showing them FAILED."""

    async def list_executions(self, message):
        now = datetime.now(UTC)
        expired = {
            e.id
            for e in self._executions.values()
            if e.status.phase == Phase.RUNNING and e.status.lease_expire_time and e.status.lease_expire_time <= now
        }
        response = await super().list_executions(message)
        response.executions = [e for e in response.executions if e.id not in expired]
        return response


@breaks("timeliness", "leases/LeaseTimeliness/a_renewal_extends_the_lease_to_now_plus_lease_duration/600s")
class RenewalAddsToTheOldLease(MemoryBackend):
    """Renews a lease to the old `lease_expire_time` + `lease_duration` instead of now + `lease_duration`."""

    async def update_execution_status(self, message):
        current = self._executions.get(message.execution_id)
        response = await super().update_execution_status(message)
        if current is not None and current.status.phase == Phase.RUNNING == message.phase:
            execution = response.execution
            extra = message.lease_duration or executions.DEFAULT_LEASE
            execution.status.lease_expire_time = current.status.lease_expire_time + extra
            self._executions[execution.id] = execution
        return response


@breaks("defaults", "state_machine/UpdateExecutionStatus/unset_lease_duration_means_60_seconds")
class DefaultLeaseOf30Seconds(MemoryBackend):
    """Grants 30 seconds when `lease_duration` is unset."""

    async def update_execution_status(self, message):
        if message.phase == Phase.RUNNING and message.lease_duration is None:
            message = dataclasses.replace(message, lease_duration=timedelta(seconds=30))
        return await super().update_execution_status(message)


# -- lists: order and paging --------------------------------------------------------------------


@breaks("ordering and paging", "pagination/ListExecutions/pages_are_complete_ordered_and_without_duplicates")
class LosesRowsOnPagination(MemoryBackend):
    """Drops the first execution of every page after the first."""

    async def list_executions(self, message):
        response = await super().list_executions(message)
        if message.page_token and response.executions:
            return pb.ListExecutionsResponse(
                executions=response.executions[1:], next_page_token=response.next_page_token
            )
        return response


@breaks("ordering and paging", "lists/Order/agent_instances_by_name_whatever_the_creation_order")
class AgentsInCreationOrder(MemoryBackend):
    """Lists agent instances in creation order (by id), not by name."""

    async def list_agent_instances(self, message):
        size = paging.page_size(message.page_size)
        offset = int(message.page_token or 0)
        agents = sorted(self._agents.values(), key=lambda a: a.id)
        more = len(agents) > offset + size
        return pb.ListAgentInstancesResponse(
            agent_instances=agents[offset : offset + size], next_page_token=str(offset + size) if more else ""
        )


@breaks("ordering and paging", "lists/Order/secrets_by_name_whatever_the_creation_order")
class SecretsInCaseInsensitiveOrder(MemoryBackend):
    """Lists secrets ordered case-insensitively."""

    async def list_secrets(self, message):
        size = paging.page_size(message.page_size)
        offset = int(message.page_token or 0)
        secrets = sorted((secret for secret, _ in self._secrets.values()), key=lambda s: s.name.lower())
        token = str(offset + size) if len(secrets) > offset + size else ""
        return pb.ListSecretsResponse(secrets=secrets[offset : offset + size], next_page_token=token)


@breaks("ordering and paging", "lists/PagingUnderChanges/agent_instances_inserted_and_deleted_while_paging")
class AgentsPagedByOffset(MemoryBackend):
    """Pages agent instances by offset: a deletion or insertion behind the page shifts the rest."""

    async def list_agent_instances(self, message):
        size = paging.page_size(message.page_size)
        offset = int(message.page_token or 0)
        names = sorted(self._agents)
        page = [self._agents[n] for n in names[offset : offset + size]]
        token = str(offset + size) if len(names) > offset + size else ""
        return pb.ListAgentInstancesResponse(agent_instances=page, next_page_token=token)


@breaks(
    "ordering and paging",
    "lists/PagingUnderChanges/executions_created_and_leaving_the_filter_while_paging/newest-first",
)
class ExecutionsPagedByOffset(MemoryBackend):
    """Pages executions by offset into the filtered list: one leaving the filter shifts the rest."""

    async def list_executions(self, message):
        validation.validate_list_executions(message)
        size = paging.page_size(message.page_size)
        offset = int(message.page_token or 0)
        rows = [self._current(i) for i in sorted(self._executions, reverse=message.newest_first)]
        rows = [
            e
            for e in rows
            if (not message.agent_instance_id or e.agent_instance_id == message.agent_instance_id)
            and (not message.phases or e.status.phase in message.phases)
        ]
        token = str(offset + size) if len(rows) > offset + size else ""
        return pb.ListExecutionsResponse(executions=rows[offset : offset + size], next_page_token=token)


@breaks("ordering and paging", "lists/Order/executions_by_id_whatever_the_order_of_updates/oldest-first")
class ExecutionsByUpdateTime(MemoryBackend):
    """Orders executions by when they were last written."""

    async def list_executions(self, message):
        response = await super().list_executions(message)
        response.executions = sorted(response.executions, key=lambda e: e.update_time, reverse=message.newest_first)
        return response


@breaks("ordering and paging", "lists/PageSize/zero_means_50_and_values_above_1000_mean_1000/ListAgentInstances")
class NoPageSizeCap(MemoryBackend):
    """Returns as many agent instances as asked, beyond 1000."""

    async def list_agent_instances(self, message):
        if message.page_size > paging.MAX_PAGE_SIZE and not message.page_token:
            names = sorted(self._agents)
            page = [self._agents[n] for n in names[: message.page_size]]
            more = len(names) > message.page_size
            token = paging.encode_token(message, names[message.page_size - 1]) if more else ""
            return pb.ListAgentInstancesResponse(agent_instances=page, next_page_token=token)
        return await super().list_agent_instances(message)


@breaks("ordering and paging", "lists/Tokens/a_token_of_another_list_is_invalid_argument")
class TokensNotBoundToTheirList(MemoryBackend):
    """Accepts a page token from another list (it only reads the key)."""

    async def list_executions(self, message):
        if message.page_token:
            try:
                paging.decode_token(message)
            except Exception:
                return pb.ListExecutionsResponse()
        return await super().list_executions(message)


# -- timestamps, identity, what a terminal transition keeps -------------------------------------


@breaks("timestamps and identity", "lifecycle/AgentInstanceTimes/update_time_moves_only_when_the_spec_changes")
class AgentUpdateTimeFrozen(MemoryBackend):
    """Never moves an agent instance's `update_time` after creation."""

    async def apply_agent_instance(self, message):
        response = await super().apply_agent_instance(message)
        agent = response.agent_instance
        if agent.update_time != agent.create_time:
            agent = dataclasses.replace(agent, update_time=agent.create_time)
            self._agents[agent.name] = agent
            self._agent_versions[(agent.id, agent.version)] = agent
        return pb.ApplyAgentInstanceResponse(agent_instance=agent, outcome=response.outcome)


@breaks("timestamps and identity", "secrets/PutSecret/update_time_moves_on_a_replacing_put")
class SecretUpdateTimeFrozen(MemoryBackend):
    """Never moves a secret's `update_time` after its first put."""

    async def put_secret(self, message):
        response = await super().put_secret(message)
        secret = dataclasses.replace(response.secret, update_time=response.secret.create_time)
        self._secrets[message.name] = (secret, message.value)
        return pb.PutSecretResponse(secret=secret, created=response.created)


@breaks("timestamps and identity", "lifecycle/IdentityAfterDelete/the_old_identifier_stops_resolving")
class OldAgentIdStillResolves(MemoryBackend):
    """After a delete and a new apply of the name, the old identifier still reaches the name."""

    def __init__(self) -> None:
        super().__init__()
        self._aliases: dict[str, str] = {}

    async def delete_agent_instance(self, message):
        agent = self._agent(message.agent_instance) if message.agent_instance else None
        response = await super().delete_agent_instance(message)
        if agent is not None:
            self._aliases[agent.id] = agent.name
        return response

    def _agent(self, ref):
        if ref.id is not None and ref.id in self._aliases and self._aliases[ref.id] in self._agents:
            return self._agents[self._aliases[ref.id]]
        return super()._agent(ref)


@breaks(
    "timestamps and identity",
    "lifecycle/TerminalTransitions/a_terminal_transition_keeps_what_it_does_not_replace/SUCCEEDED",
)
class TerminalDropsOutput(MemoryBackend):
    """Clears the stored output when a terminal update carries none."""

    async def update_execution_status(self, message):
        response = await super().update_execution_status(message)
        execution = response.execution
        if message.phase in executions.TERMINAL_PHASES and message.output is None:
            execution.status.output = None
        return response


@breaks(
    "timestamps and identity",
    "lifecycle/TerminalTransitions/a_terminal_transition_keeps_what_it_does_not_replace/CANCELLED",
)
class CancelForgetsTheRunner(MemoryBackend):
    """Clears `runner_id` and `start_time` when a running execution is cancelled."""

    async def cancel_execution(self, message):
        response = await super().cancel_execution(message)
        response.execution.status.runner_id = ""
        response.execution.status.start_time = None
        return response


@breaks(
    "timestamps and identity", "state_machine/UpdateExecutionStatus/terminal_update_ends_the_lease_and_sets_end_time"
)
class NoEndTime(MemoryBackend):
    """Never sets `end_time` (the suite used to crash on it instead of failing)."""

    async def update_execution_status(self, message):
        response = await super().update_execution_status(message)
        response.execution.status.end_time = None
        return response


@breaks("fidelity", "fidelity/ExecutionFidelity/input_survives_create_get_and_list/empty-struct")
class DropsEmptyStructuredInput(MemoryBackend):
    """Stores an empty `input.data` object as unset."""

    async def create_execution(self, message):
        if message.input is not None and message.input.data is not None and not message.input.data.fields:
            message = dataclasses.replace(message, input=dataclasses.replace(message.input, data=None))
        return await super().create_execution(message)


# -- watch --------------------------------------------------------------------------------------


@breaks("watch", "watch/WatchExecution/delivers_every_version_in_order_and_ends_at_terminal")
class WatchSkipsVersions(MemoryBackend):
    """Delivers only every other state after the first."""

    async def watch_execution(self, message):
        sent = 0
        async for response in super().watch_execution(message):
            terminal = response.execution.status.phase in executions.TERMINAL_PHASES
            if sent == 0 or sent % 2 == 0 or terminal:
                yield response
            sent += 1


@breaks("watch", "watch/WatchExecution/a_terminal_execution_sends_one_message")
class WatchRepeatsTheTerminalState(MemoryBackend):
    """Sends the terminal state twice before ending the stream."""

    async def watch_execution(self, message):
        async for response in super().watch_execution(message):
            yield response
            if response.execution.status.phase in executions.TERMINAL_PHASES:
                yield response


@breaks("watch", "watch/WatchExecution/unknown_execution_is_not_found")
class WatchEndsSilently(MemoryBackend):
    """Ends the stream normally, without a message or an error, for an unknown execution (the suite used to
    crash on it instead of failing)."""

    async def watch_execution(self, message):
        if message.execution_id and message.execution_id not in self._executions:
            return
        async for response in super().watch_execution(message):
            yield response
