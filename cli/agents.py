"""``stigmer apply`` and ``stigmer agent``: agent instances, and executing one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ._agent_refs import agent_ref as _ref
from ._completion import agent_names
from ._confirm import confirm, yes_option
from ._output import emit, output_option, status, when
from ._runtime import every_page, with_backend
from .execute import execute

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["agent"]

AGENT_COLUMNS: list[tuple[str, Callable[[pb.AgentInstance], object]]] = [
    ("NAME", lambda a: a.name),
    ("ID", lambda a: a.id),
    ("VERSION", lambda a: a.version),
    ("MODEL", lambda a: f"{a.spec.model.provider}/{a.spec.model.model}" if a.spec and a.spec.model else None),
    ("UPDATED", lambda a: when(a.update_time)),
]


@click.group()
def agent() -> None:
    """Agent instances: list, get, delete, execute."""


agent.add_command(execute)  # in a module of its own: it is the largest command


@agent.command("list")
@output_option
@with_backend
async def list_agents(backend: Backend, output: str) -> None:
    """List agent instances by name (ListAgentInstances)."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    agents = await every_page(backend.list_agent_instances, pb.ListAgentInstancesRequest(), "agent_instances")
    emit(output, {"agentInstances": agents}, AGENT_COLUMNS, rows=agents)


@agent.command("get")
@click.argument("name", shell_complete=agent_names)
@output_option
@with_backend
async def get_agent(backend: Backend, name: str, output: str) -> None:
    """Show one agent instance, by name or id (GetAgentInstance)."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    found = await backend.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=_ref(name)))
    emit(output, found.agent_instance, AGENT_COLUMNS)


@agent.command("delete")
@click.argument("name", shell_complete=agent_names)
@yes_option
@with_backend
async def delete_agent(backend: Backend, name: str, yes: bool) -> None:
    """Delete an agent instance; its executions are kept (DeleteAgentInstance).

    Asks first on a terminal, unless --yes.
    """
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    confirm(f"Delete agent instance {name}?", yes)
    await backend.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(name)))
    status(f"agent instance {name} deleted")
