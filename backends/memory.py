"""A backend in memory: for callers' tests and the conformance suite's meta-tests.

It passes the conformance suite like any other backend, because every
decision is made by ``stigmer_backend.backends.rules``; this file only keeps dicts.
Nothing survives the process (no ``CAPABILITY_DURABLE_STORAGE``), and secret
values are held in plain memory, so never use it for real secrets.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from stigmer_backend.gen.stigmer.backend import v1 as pb

from .base import Backend
from .rules import agent_instances, errors, execution_context, executions, ids, paging, validation
from .rules.backend_info import backend_info

__all__ = ["MemoryBackend"]

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryBackend(Backend):
    """``BackendService`` over dicts, with secrets (in plain memory)."""

    kind = "memory"

    def __init__(self) -> None:
        self._agents: dict[str, pb.AgentInstance] = {}  # by name
        self._agent_versions: dict[tuple[str, int], pb.AgentInstance] = {}
        self._executions: dict[str, pb.Execution] = {}
        self._newest: str | None = None  # the greatest id: ids sort in creation order
        self._snapshots: dict[str, tuple[str, int]] = {}  # execution id -> agent version key
        self._by_request: dict[str, str] = {}
        self._history: dict[str, list[pb.Execution]] = {}
        self._secrets: dict[str, tuple[pb.Secret, str]] = {}
        self._changed = asyncio.Condition()

    # -- executions ---------------------------------------------------------------------------

    def _store(self, execution: pb.Execution) -> pb.Execution:
        self._executions[execution.id] = execution
        self._history.setdefault(execution.id, []).append(execution)
        return execution

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _current(self, execution_id: str) -> pb.Execution:
        if execution_id not in self._executions:
            raise errors.not_found(f"execution {execution_id!r}")
        execution = self._executions[execution_id]
        expired = executions.expire_lease(execution, _now())
        return execution if expired is None else self._store(expired)

    async def get_backend_info(self, message: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        return backend_info(self.kind, [pb.Capability.SECRETS], version="in-memory")

    async def create_execution(self, message: pb.CreateExecutionRequest) -> pb.CreateExecutionResponse:
        validation.validate_create_execution(message)
        if message.request_id in self._by_request:
            existing = self._current(self._by_request[message.request_id])
            executions.require_retry_of(existing, message)
            return pb.CreateExecutionResponse(execution=existing, created=False)
        assert message.agent_instance is not None  # validate_create_execution requires it
        agent = self._agent(message.agent_instance)
        execution = executions.new_execution(ids.next_id(ids.EXECUTION_PREFIX, self._newest), message, agent, _now())
        self._store(execution)
        self._newest = execution.id
        self._snapshots[execution.id] = (agent.id, agent.version)
        self._by_request[message.request_id] = execution.id
        await self._notify()
        return pb.CreateExecutionResponse(execution=execution, created=True)

    async def get_execution(self, message: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        validation.validate_execution_id(message.execution_id)
        return pb.GetExecutionResponse(execution=self._current(message.execution_id))

    async def list_executions(self, message: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        validation.validate_list_executions(message)
        size = paging.page_size(message.page_size)
        after = paging.decode_token(message)
        order = sorted(self._executions, reverse=message.newest_first)
        if after is not None:
            order = [i for i in order if (i < after if message.newest_first else i > after)]
        fetched: list[pb.Execution] = []
        for execution_id in order:
            execution = self._current(execution_id)
            if message.agent_instance_id and execution.agent_instance_id != message.agent_instance_id:
                continue
            if message.phases and executions.status_of(execution).phase not in message.phases:
                continue
            fetched.append(execution)
            if len(fetched) > size:
                break
        page, token = paging.cut(message, fetched, size, key=lambda execution: execution.id)
        return pb.ListExecutionsResponse(executions=page, next_page_token=token)

    async def _change(
        self, execution_id: str, decide: Callable[[pb.Execution, datetime], pb.Execution]
    ) -> pb.Execution:
        current = self._current(execution_id)
        changed = self._store(decide(current, _now()))
        await self._notify()
        return changed

    async def update_execution_status(
        self, message: pb.UpdateExecutionStatusRequest
    ) -> pb.UpdateExecutionStatusResponse:
        validation.validate_update_execution_status(message)
        updated = await self._change(message.execution_id, lambda e, now: executions.update_status(e, message, now))
        return pb.UpdateExecutionStatusResponse(execution=updated)

    async def cancel_execution(self, message: pb.CancelExecutionRequest) -> pb.CancelExecutionResponse:
        validation.validate_cancel_execution(message)
        cancelled = await self._change(message.execution_id, lambda e, now: executions.cancel(e, message, now))
        return pb.CancelExecutionResponse(execution=cancelled)

    async def watch_execution(self, message: pb.WatchExecutionRequest) -> AsyncIterator[pb.WatchExecutionResponse]:
        validation.validate_execution_id(message.execution_id)
        execution = self._current(message.execution_id)
        while True:
            yield pb.WatchExecutionResponse(execution=execution)
            if executions.status_of(execution).phase in executions.TERMINAL_PHASES:
                return
            async with self._changed:
                while True:
                    history = self._history[execution.id]
                    if history[-1].version > execution.version:
                        execution = history[execution.version]  # history[i] is version i + 1
                        break
                    lease = executions.status_of(execution).lease_expire_time
                    timeout = None if lease is None else max(0.0, (lease - _now()).total_seconds()) + 0.001
                    try:
                        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                        # arrives as the wait ends, and the cancelled watcher would keep running.
                        async with asyncio.timeout(timeout):
                            await self._changed.wait()
                    except TimeoutError:
                        self._current(execution.id)  # applies the expiry, appending to history

    async def get_execution_context(self, message: pb.GetExecutionContextRequest) -> pb.GetExecutionContextResponse:
        validation.validate_get_execution_context(message)
        execution = self._current(message.execution_id)
        execution_context.check_holder(execution, message.runner_id)
        snapshot = self._agent_versions[self._snapshots[execution.id]]
        values = {name: value for name, (_, value) in self._secrets.items()}
        return execution_context.build(execution, snapshot, values)

    # -- agent instances ----------------------------------------------------------------------

    def _agent(self, ref: pb.AgentInstanceRef) -> pb.AgentInstance:
        if ref.id is not None:
            found = next((a for a in self._agents.values() if a.id == ref.id), None)
            what = f"agent instance with id {ref.id!r}"
        else:
            assert ref.name is not None  # validate_agent_instance_ref requires an id or a name
            found, what = self._agents.get(ref.name), f"agent instance {ref.name!r}"
        if found is None:
            raise errors.not_found(what)
        return found

    async def get_agent_instance(self, message: pb.GetAgentInstanceRequest) -> pb.GetAgentInstanceResponse:
        ref = validation.validate_agent_instance_ref(message.agent_instance, "agent_instance")
        return pb.GetAgentInstanceResponse(agent_instance=self._agent(ref))

    async def apply_agent_instance(self, message: pb.ApplyAgentInstanceRequest) -> pb.ApplyAgentInstanceResponse:
        validation.validate_apply_agent_instance(message)
        newest = max((key[0] for key in self._agent_versions), default=None)
        agent, outcome = agent_instances.apply(
            self._agents.get(message.name), message, ids.next_id(ids.AGENT_INSTANCE_PREFIX, newest), _now()
        )
        self._agents[agent.name] = agent
        self._agent_versions[(agent.id, agent.version)] = agent
        return pb.ApplyAgentInstanceResponse(agent_instance=agent, outcome=outcome)

    async def list_agent_instances(self, message: pb.ListAgentInstancesRequest) -> pb.ListAgentInstancesResponse:
        page, token = self._page(message, self._agents)
        return pb.ListAgentInstancesResponse(agent_instances=page, next_page_token=token)

    async def delete_agent_instance(self, message: pb.DeleteAgentInstanceRequest) -> pb.DeleteAgentInstanceResponse:
        ref = validation.validate_agent_instance_ref(message.agent_instance, "agent_instance")
        del self._agents[self._agent(ref).name]
        return pb.DeleteAgentInstanceResponse()

    # -- secrets ------------------------------------------------------------------------------

    async def put_secret(self, message: pb.PutSecretRequest) -> pb.PutSecretResponse:
        validation.validate_put_secret(message)
        now = _now()
        existing = self._secrets.get(message.name)
        if existing is None:
            secret = pb.Secret(name=message.name, version=1, create_time=now, update_time=now)
        else:
            secret = dataclasses.replace(existing[0], version=existing[0].version + 1, update_time=now)
        self._secrets[message.name] = (secret, message.value)
        return pb.PutSecretResponse(secret=secret, created=existing is None)

    async def list_secrets(self, message: pb.ListSecretsRequest) -> pb.ListSecretsResponse:
        metadata = {name: secret for name, (secret, _) in self._secrets.items()}
        page, token = self._page(message, metadata)
        return pb.ListSecretsResponse(secrets=page, next_page_token=token)

    async def delete_secret(self, message: pb.DeleteSecretRequest) -> pb.DeleteSecretResponse:
        validation.validate_secret_name(message.name)
        if self._secrets.pop(message.name, None) is None:
            raise errors.not_found(f"secret {message.name!r}")
        return pb.DeleteSecretResponse()

    @staticmethod
    def _page(
        message: pb.ListAgentInstancesRequest | pb.ListSecretsRequest, items_by_name: Mapping[str, T]
    ) -> tuple[list[T], str]:
        size = paging.page_size(message.page_size)
        after = paging.decode_token(message)
        names = sorted(name for name in items_by_name if after is None or name > after)
        names, token = paging.cut(message, names, size, key=str)
        return [items_by_name[name] for name in names], token
