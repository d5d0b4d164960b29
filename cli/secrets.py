"""``stigmer secret``: store, list and delete secrets; inspect and rotate the master key.

A value goes in through ``put``, read from stdin or a hidden prompt, never
from the command line (where it would land in shell history and the process
list), or through ``stigmer apply --secret`` (``cli/apply.py``), which takes
an argv value only with a warning; it never comes out: ``list`` shows
metadata only. Agents
reference secrets as ``${.secrets.NAME}``; runners get the values for the
execution they hold and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ._completion import secret_names
from ._confirm import confirm, yes_option
from ._output import emit, output_option, when
from ._output import status as say
from ._runtime import every_page, open_backend, run, with_backend
from ._secret_input import check_secret_name, read_value

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.backends.encryption import MasterKeyAdmin
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["secret"]

_COLUMNS: list[tuple[str, Callable[[pb.Secret], object]]] = [
    ("NAME", lambda secret: secret.name),
    ("VERSION", lambda secret: secret.version),
    ("CREATED", lambda secret: when(secret.create_time)),
    ("UPDATED", lambda secret: when(secret.update_time)),
]


def _secret_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return check_secret_name(value)


def _key_admin(backend: Backend, command: str) -> MasterKeyAdmin:
    """``backend`` as a ``MasterKeyAdmin``: a backend that keeps the master key of its secrets itself."""
    from stigmer_backend.backends.encryption import MasterKeyAdmin

    from ._context import load_context

    if not isinstance(backend, MasterKeyAdmin):
        context = load_context()
        raise click.ClickException(
            f"`stigmer secret {command}` works on the local database only; the active context is "
            f"{context.endpoint or context.url or context.kind} (see `stigmer context`)"
        )
    return backend


@click.group()
def secret() -> None:
    """Secrets that agents reference as ${.secrets.NAME}, stored encrypted."""


@secret.command()
@click.argument("name", callback=_secret_name)
@output_option
def put(name: str, output: str) -> None:
    """Store NAME's value (create or replace).

    The value is read from stdin when it is piped (one trailing newline is
    dropped), otherwise prompted for without echo, twice. It is never taken
    from the command line.
    """
    value = read_value()

    async def main() -> pb.PutSecretResponse:
        from stigmer_backend.gen.stigmer.backend import v1 as pb

        async with open_backend() as backend:
            return await backend.put_secret(pb.PutSecretRequest(name=name, value=value))

    response = run(main)
    assert response.secret is not None  # PutSecret answers with the stored secret's metadata or fails
    say(f"secret {name} {'created' if response.created else 'updated'} (version {response.secret.version})")
    emit(output, response.secret, _COLUMNS)


@secret.command("list")
@output_option
@with_backend
async def list_secrets(backend: Backend, output: str) -> None:
    """List secrets by name (metadata only: values are never shown)."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    secrets = await every_page(backend.list_secrets, pb.ListSecretsRequest(), "secrets")
    emit(output, {"secrets": secrets}, _COLUMNS, rows=secrets)


@secret.command()
@click.argument("name", callback=_secret_name, shell_complete=secret_names)
@yes_option
@with_backend
async def delete(backend: Backend, name: str, yes: bool) -> None:
    """Delete NAME. Agents that reference it fail to start until it is put again.

    Asks first on a terminal, unless --yes.
    """
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    confirm(f"Delete secret {name}? Its value cannot be recovered", yes)
    await backend.delete_secret(pb.DeleteSecretRequest(name=name))
    say(f"secret {name} deleted")


@secret.command()
@output_option
@with_backend
async def status(backend: Backend, output: str) -> None:
    """Where the master key lives and whether it opens the database's secrets.

    Exits 1 when the secrets cannot be opened (no key, or a key that does
    not match). Never creates a key.
    """
    report = await _key_admin(backend, "status").master_key_status()
    if report.place:
        key = f"{report.place} (key id {report.key_id})"
    elif report.new_key_place:
        key = f"none yet: the first `stigmer secret put` creates one in {report.new_key_place}"
    elif report.problem:
        key = "none usable (see the error below)"
    else:
        key = "not found"
    matches = {True: "yes", False: "NO", None: "- (no secrets stored)"}[report.matches]
    rows = [
        ("database", report.database),
        ("secrets", str(report.secrets)),
        ("master key", key),
        ("sealed under key id", report.database_key_id or "-"),
        ("key matches database", matches),
    ]
    if output == "table":
        # Label and value per line, never cut short: paths and keychain places are long.
        for label, value in rows:
            click.echo(f"{label + ':':<22}{value}")
    else:
        emit(output, dataclasses.asdict(report), [])
    if report.problem:
        raise click.ClickException(report.problem)


@secret.command("rotate-key")
@with_backend
async def rotate_key(backend: Backend) -> None:
    """Re-encrypt every secret under a new master key, in one transaction.

    The new key is random and replaces the current one where it lives (OS
    keychain or key file). When the current key comes from
    STIGMER_MASTER_KEY, which Stigmer cannot change, put the new key (base64
    of 32 bytes, e.g. `openssl rand -base64 32`) in STIGMER_NEW_MASTER_KEY,
    then move it to STIGMER_MASTER_KEY once this succeeds.
    """
    from stigmer_backend.backends.encryption import NEW_KEY_ENV_VAR, MasterKeyError, environment_key

    admin = _key_admin(backend, "rotate-key")
    try:
        new_key = environment_key(NEW_KEY_ENV_VAR)
    except MasterKeyError as error:
        raise click.UsageError(str(error)) from None
    rotation = await admin.rotate_master_key(new_key)
    say(
        f"re-encrypted {rotation.secrets} secret(s) under a new master key (key id {rotation.new_key.key_id.hex()}, "
        f"replacing {rotation.old_key_id}), kept in {rotation.new_key.place}"
    )
    if new_key is not None and not rotation.store.writable:
        say("now set STIGMER_MASTER_KEY to the value of STIGMER_NEW_MASTER_KEY, and unset STIGMER_NEW_MASTER_KEY")
