"""``stigmer apply`` and ``stigmer agent``: agent instances, and executing one."""

from __future__ import annotations

import click

from ._agent_refs import agent_ref as _ref
from ._output import emit, output_option, status
from ._runtime import every_page, with_backend
from .execute import execute

__all__ = ["agent", "apply"]

AGENT_COLUMNS = [
    ("NAME", lambda a: a.name),
    ("ID", lambda a: a.id),
    ("VERSION", lambda a: a.version),
    ("MODEL", lambda a: f"{a.spec.model.provider}/{a.spec.model.model}" if a.spec.model else None),
    ("UPDATED", lambda a: a.update_time.isoformat(timespec="seconds") if a.update_time else None),
]


@click.command()
@click.option(
    "-f",
    "--file",
    "manifests",
    required=True,
    callback=lambda ctx, param, path: _read_manifests(path),
    help="Manifest file (YAML or JSON; - for stdin).",
)
@with_backend
async def apply(backend, manifests: list) -> None:
    """Create or update the agent instances a manifest declares (ApplyAgentInstance).

    Every document is checked before the first one is applied, so a bad file
    changes nothing.
    """
    from stigmer.gen.stigmer.backend import v1 as pb

    for manifest in manifests:
        request = pb.ApplyAgentInstanceRequest(name=manifest.name, spec=manifest.spec)
        response = await backend.apply_agent_instance(request)
        status(f"agent instance {manifest.name} {response.outcome.name.lower()}")


def _read_manifests(path: str) -> list:
    from ._manifests import read_manifests

    return read_manifests(path)


@click.group()
def agent() -> None:
    """Agent instances: list, get, delete, execute."""


agent.add_command(execute)  # in a module of its own: it is the largest command


@agent.command("list")
@output_option
@with_backend
async def list_agents(backend, output: str) -> None:
    """List agent instances by name (ListAgentInstances)."""
    from stigmer.gen.stigmer.backend import v1 as pb

    agents = await every_page(backend.list_agent_instances, pb.ListAgentInstancesRequest(), "agent_instances")
    emit(output, {"agentInstances": agents}, AGENT_COLUMNS, rows=agents)


@agent.command("get")
@click.argument("name")
@output_option
@with_backend
async def get_agent(backend, name: str, output: str) -> None:
    """Show one agent instance, by name or id (GetAgentInstance)."""
    from stigmer.gen.stigmer.backend import v1 as pb

    found = await backend.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=_ref(name)))
    emit(output, found.agent_instance, AGENT_COLUMNS)


@agent.command("delete")
@click.argument("name")
@with_backend
async def delete_agent(backend, name: str) -> None:
    """Delete an agent instance; its executions are kept (DeleteAgentInstance)."""
    from stigmer.gen.stigmer.backend import v1 as pb

    await backend.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(name)))
    status(f"agent instance {name} deleted")
