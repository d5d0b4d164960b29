"""``stigmer apply`` and ``stigmer diff``: declared agent instances (and secrets) made real, or compared.

Everything a command line names is read and checked first (every manifest
document, every secret name and value); only then is anything written, so a
bad file or a missing value changes nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ._manifests import Manifest, read_manifests
from ._output import for_terminal, status
from ._runtime import run, with_backend
from ._secret_input import ARGV_WARNING, check_secret_name, value_for

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["apply", "diff"]

_FILES_HELP = "Manifest file, directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable."


@click.command()
@click.option("-f", "--file", "paths", multiple=True, metavar="PATH", help=_FILES_HELP)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="Store a secret too; repeatable. A bare NAME takes its value from $NAME, else a hidden prompt, else stdin.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be created, updated or left unchanged.")
def apply(paths: tuple[str, ...], secrets: tuple[str, ...], dry_run: bool) -> None:
    """Create or update the agent instances manifests declare, and the secrets they need.

    \b
      stigmer apply -f examples/echo-agent.yaml --secret GREETING_TOKEN
      stigmer apply -f agents/ -f more.yaml --dry-run
      printf %s "$TOKEN" | stigmer apply --secret GH_TOKEN

    Secrets are stored first (agents reference them), then agent instances
    (ApplyAgentInstance), each reported as created, updated or unchanged.
    """
    if not paths and not secrets:
        raise click.UsageError("nothing to apply: give -f FILE (a directory, or - for stdin) and/or --secret NAME")
    manifests = read_manifests(paths)
    names, literal = _secret_names(secrets)
    if literal:
        status(ARGV_WARNING)
    _warn_about_providers(manifests)
    if dry_run:
        run(lambda: _dry_run(manifests, names))
        return
    values = _secret_values(secrets, stdin_free="-" not in paths)
    run(lambda: _apply(manifests, values))


def _secret_names(secrets: tuple[str, ...]) -> tuple[list[str], bool]:
    """The names of ``--secret`` options, checked, and whether any carried its value in argv."""
    names: list[str] = []
    for option in secrets:
        name = check_secret_name(option.partition("=")[0], param_hint="--secret")
        if name in names:
            raise click.BadParameter(f"{name} is given more than once", param_hint="--secret")
        names.append(name)
    return names, any("=" in option for option in secrets)


def _secret_values(secrets: tuple[str, ...], stdin_free: bool) -> dict[str, str]:
    from ._secret_input import checked

    values: dict[str, str] = {}
    for option in secrets:
        name, literal, value = option.partition("=")
        if literal:
            values[name] = checked(value, f"--secret {name}=: the value is empty")
        else:
            values[name] = value_for(name, stdin_free)
            stdin_free = stdin_free and name in os.environ  # stdin is read at most once
    return values


def _warn_about_providers(manifests: list[Manifest]) -> None:
    """A provider Stigmer's runner cannot call fails every execution (MODEL_PROVIDER_UNSUPPORTED): say so now."""
    from stigmer_backend.runner.providers import SUPPORTED_PROVIDERS

    for manifest in manifests:
        provider = manifest.spec.model.provider if manifest.spec.model else ""
        if provider and provider not in SUPPORTED_PROVIDERS:
            status(
                f"warning: agent instance {manifest.name}: Stigmer's runner cannot call provider {provider!r} "
                f"(it knows {', '.join(sorted(SUPPORTED_PROVIDERS))}); its executions will fail with "
                "MODEL_PROVIDER_UNSUPPORTED unless another runner serves them"
            )


async def _apply(manifests: list[Manifest], values: dict[str, str]) -> None:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    from ._runtime import open_backend

    async with open_backend() as backend:
        for name, value in values.items():
            put = await backend.put_secret(pb.PutSecretRequest(name=name, value=value))
            assert put.secret is not None  # PutSecret answers with the stored secret's metadata or fails
            status(f"secret {name} {'created' if put.created else 'updated'} (version {put.secret.version})")
        for manifest in manifests:
            request = pb.ApplyAgentInstanceRequest(name=manifest.name, spec=manifest.spec)
            applied = await backend.apply_agent_instance(request)
            status(f"agent instance {manifest.name} {applied.outcome.name.lower()}")


async def _dry_run(manifests: list[Manifest], names: list[str]) -> None:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    from ._runtime import every_page, open_backend

    async with open_backend() as backend:
        if names:
            stored = await every_page(backend.list_secrets, pb.ListSecretsRequest(), "secrets")
            versions = {secret.name: secret.version for secret in stored}
            for name in names:
                found = versions.get(name)
                click.echo(f"secret {name} would be {'created' if found is None else f'updated (now version {found})'}")
        for manifest in manifests:
            current = await _current(backend, manifest.name)
            if current is None:
                outcome = "created"
            elif current.spec is not None and bytes(current.spec) == bytes(manifest.spec):
                outcome = "unchanged"
            else:
                outcome = f"updated (now version {current.version})"
            click.echo(f"agent instance {manifest.name} would be {outcome}")
    status("dry run: nothing was written")


async def _current(backend: Backend, name: str) -> pb.AgentInstance | None:
    """The stored agent instance called ``name``, or None."""
    from grpclib import GRPCError
    from grpclib.const import Status

    from stigmer_backend.gen.stigmer.backend import v1 as pb

    try:
        response = await backend.get_agent_instance(
            pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name))
        )
    except GRPCError as error:
        if error.status == Status.NOT_FOUND:
            return None
        raise
    return response.agent_instance


class _DiffFailed(click.ClickException):
    exit_code = 2  # as diff(1) and kubectl diff: 0 same, 1 different, 2 trouble


@click.command()
@click.option("-f", "--file", "paths", multiple=True, required=True, metavar="PATH", help=_FILES_HELP)
def diff(paths: tuple[str, ...]) -> None:
    """Show how the manifests differ from the agent instances the backend holds.

    A unified diff of each spec (proto JSON, as YAML), the backend's side
    first. Exit code 0 when nothing differs, 1 when something does, 2 on an
    error (as diff(1)).
    """
    try:
        manifests = read_manifests(paths)
        differ = _diff(manifests)
    except click.UsageError:
        raise
    except click.ClickException as error:
        raise _DiffFailed(error.message) from None
    raise SystemExit(1 if differ else 0)


@with_backend
async def _diff(backend: Backend, manifests: list[Manifest]) -> bool:
    import difflib

    differ = False
    for manifest in manifests:
        current = await _current(backend, manifest.name)
        before = [] if current is None else _as_yaml(manifest.name, current.spec)
        after = _as_yaml(manifest.name, manifest.spec)
        label = "(none)" if current is None else f"{manifest.name} (backend, version {current.version})"
        lines = list(difflib.unified_diff(before, after, label, f"{manifest.name} ({manifest.source})", lineterm=""))
        differ = differ or bool(lines)
        for line in lines:
            click.echo(for_terminal(line))
    return differ


def _as_yaml(name: str, spec: pb.AgentInstanceSpec | None) -> list[str]:
    import yaml

    text = yaml.safe_dump(
        {"name": name, "spec": spec.to_dict() if spec is not None else {}}, sort_keys=False, allow_unicode=True
    )
    return text.splitlines()
