"""Backends with one deliberate contract violation each: the suite must fail every one.

Each is the conforming ``MemoryBackend`` with a single override, so a failing
run can only come from that defect.
"""

from __future__ import annotations

import dataclasses

from stigmer.backends.memory import MemoryBackend
from stigmer.backends.rules import executions
from stigmer.gen.stigmer.backend import v1 as pb


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


class IgnoresExpectedVersion(MemoryBackend):
    """Never checks ``expected_version`` (no compare-and-set)."""

    async def update_execution_status(self, message):
        return await super().update_execution_status(dataclasses.replace(message, expected_version=0))


class LeaksSecretInGet(MemoryBackend):
    """Returns agent instances with secret references resolved, from an ordinary get."""

    async def get_agent_instance(self, message):
        response = await super().get_agent_instance(message)
        values = {name: value for name, (_, value) in self._secrets.items()}
        agent = response.agent_instance
        env = [pb.EnvironmentVariable(name=v.name, value=_resolve(v.value, values)) for v in agent.spec.env]
        spec = dataclasses.replace(agent.spec, env=env)
        return pb.GetAgentInstanceResponse(agent_instance=dataclasses.replace(agent, spec=spec))


def _resolve(text, values):
    for name, value in values.items():
        text = text.replace(f"${{.secrets.{name}}}", value)
    return text


class LosesRowsOnPagination(MemoryBackend):
    """Drops the first execution of every page after the first."""

    async def list_executions(self, message):
        response = await super().list_executions(message)
        if message.page_token and response.executions:
            return pb.ListExecutionsResponse(
                executions=response.executions[1:], next_page_token=response.next_page_token
            )
        return response


class NeverExpiresLeases(MemoryBackend):
    """Keeps an execution RUNNING forever after its runner stops renewing."""

    def _current(self, execution_id):
        if execution_id not in self._executions:
            return super()._current(execution_id)
        return self._executions[execution_id]


class WatchSkipsVersions(MemoryBackend):
    """Delivers only every other state after the first."""

    async def watch_execution(self, message):
        sent = 0
        async for response in super().watch_execution(message):
            terminal = response.execution.status.phase in executions.TERMINAL_PHASES
            if sent == 0 or sent % 2 == 0 or terminal:
                yield response
            sent += 1


class DuplicatesOnRetry(MemoryBackend):
    """Creates a new execution for every call, ignoring ``request_id``."""

    async def create_execution(self, message):
        self._by_request.pop(message.request_id, None)
        return await super().create_execution(message)
