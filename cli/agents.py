"""``stigmer apply`` and ``stigmer agent``: agent instances, and executing one."""

from __future__ import annotations

import click

from ._agent_refs import agent_ref as _ref
from ._output import emit, output_option, status
from ._runtime import every_page, open_backend, run, with_backend

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


@agent.command("execute")
@click.argument("name")
@click.argument("message")
@click.option("--data", help="Structured input: a JSON object.")
@click.option("--detach", is_flag=True, help="Only create the execution (PENDING) and print its id.")
@click.option("--lease", type=click.IntRange(5, 3600), default=30, show_default=True, help="Lease in seconds.")
@output_option
def execute(name: str, message: str, data: str | None, detach: bool, lease: int, output: str) -> None:
    """Run an agent instance on MESSAGE, here and now (CreateExecution, then run it).

    Prints the agent's answer; -o json prints the whole final execution.
    """
    structured = _parse_data(data)

    async def main() -> None:
        import uuid
        from datetime import timedelta

        from stigmer.gen.google.protobuf import Struct
        from stigmer.gen.stigmer.backend import v1 as pb
        from stigmer.runner.executor import run_execution

        request = pb.CreateExecutionRequest(
            request_id=str(uuid.uuid4()),
            agent_instance=_ref(name),
            input=pb.ExecutionInput(message=message, data=None if structured is None else Struct.from_dict(structured)),
        )
        async with open_backend() as backend:
            execution = (await backend.create_execution(request)).execution
            if detach:
                click.echo(execution.id)
                return
            final = await run_execution(backend, execution, lease=timedelta(seconds=lease), on_status=status)
        _show_result(final, output)

    run(main)


def _parse_data(data: str | None) -> dict | None:
    if data is None:
        return None
    import json

    try:
        parsed = json.loads(data)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    return parsed


def _show_result(final, output: str) -> None:
    from stigmer.gen.stigmer.backend import v1 as pb

    if output != "table":
        emit(output, final, [])
    elif final.status.phase == pb.ExecutionPhase.SUCCEEDED:
        click.echo(final.status.output.text if final.status.output else "")
    if final.status.phase != pb.ExecutionPhase.SUCCEEDED:
        error = final.status.error
        detail = f"{error.code}: {error.message}" if error else final.status.message
        raise click.ClickException(f"execution {final.id} {final.status.phase.name}: {detail}")
