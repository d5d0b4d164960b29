"""``stigmer apply`` and ``stigmer agent``: agent instances, and executing one."""

from __future__ import annotations

import click

from ._output import emit, output_option
from ._runtime import every_page, open_backend, run
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
@click.option("-f", "--file", "path", required=True, help="Manifest file (YAML or JSON; - for stdin).")
def apply(path: str) -> None:
    """Create or update the agent instances a manifest declares (ApplyAgentInstance).

    Every document is checked before the first one is applied, so a bad file
    changes nothing.
    """
    from ._manifests import read_manifests

    manifests = read_manifests(path)

    async def main() -> None:
        from stigmer.gen.stigmer.backend import v1 as pb

        async with open_backend() as backend:
            for manifest in manifests:
                request = pb.ApplyAgentInstanceRequest(name=manifest.name, spec=manifest.spec)
                response = await backend.apply_agent_instance(request)
                click.echo(f"agent instance {manifest.name} {response.outcome.name.lower()}")

    run(main)


@click.group()
def agent() -> None:
    """Agent instances: list, get, delete, execute."""


agent.add_command(execute)  # in a module of its own: it is the largest command


def _ref(name_or_id: str):
    from stigmer.gen.stigmer.backend import v1 as pb

    return pb.AgentInstanceRef(id=name_or_id) if name_or_id.startswith("agi_") else pb.AgentInstanceRef(name=name_or_id)


@agent.command("list")
@output_option
def list_agents(output: str) -> None:
    """List agent instances by name (ListAgentInstances)."""

    async def main() -> None:
        from stigmer.gen.stigmer.backend import v1 as pb

        async with open_backend() as backend:
            agents = await every_page(backend.list_agent_instances, pb.ListAgentInstancesRequest(), "agent_instances")
        emit(output, {"agentInstances": agents}, AGENT_COLUMNS, rows=agents)

    run(main)


@agent.command("get")
@click.argument("name")
@output_option
def get_agent(name: str, output: str) -> None:
    """Show one agent instance, by name or id (GetAgentInstance)."""

    async def main() -> None:
        from stigmer.gen.stigmer.backend import v1 as pb

        async with open_backend() as backend:
            found = await backend.get_agent_instance(pb.GetAgentInstanceRequest(agent_instance=_ref(name)))
        emit(output, found.agent_instance, AGENT_COLUMNS)

    run(main)


@agent.command("delete")
@click.argument("name")
def delete_agent(name: str) -> None:
    """Delete an agent instance; its executions are kept (DeleteAgentInstance)."""

    async def main() -> None:
        from stigmer.gen.stigmer.backend import v1 as pb

        async with open_backend() as backend:
            await backend.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=_ref(name)))
        click.echo(f"agent instance {name} deleted")

    run(main)
