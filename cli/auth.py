"""``stigmer login``, ``logout`` and ``context``: which backend the CLI talks to.

Local mode (the default) uses the SQLite file in ``$STIGMER_HOME``; after
``login`` every command talks to the remote endpoint instead, with the same
behaviour. The endpoint is checked before anything is saved; the token is
kept in the OS keychain, or a 0600 file where there is none, never in the
config file.
"""

from __future__ import annotations

import sys

import click

from stigmer_backend.backends.rules import CONTRACT_VERSION

from ._output import emit, output_option, status

SUPPORTED_CONTRACT_MAJOR = CONTRACT_VERSION.partition(".")[0]
"""Servers whose contract has another major version are refused at login: this CLI speaks the one it is built on."""
LOGIN_TIMEOUT = 15.0


def _read_token() -> str:
    """From stdin when it is piped (``stigmer login ... < token-file``), else a hidden prompt.

    Never an argument: arguments land in shell history and ``ps`` output.
    An empty token means none, for a server without authentication.
    """
    if not sys.stdin.isatty():
        return sys.stdin.read().strip()
    return click.prompt("Token (empty for none)", hide_input=True, default="", show_default=False).strip()


@click.command()
@click.option("--endpoint", help="HOST:PORT of the server ([::1]:PORT for IPv6).  [required]")
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM file of the CA that signed the server's certificate  [default: the system's trust store]",
)
@click.option("--plaintext", is_flag=True, help="No TLS: only for a server on this machine or a trusted network.")
def login(endpoint: str | None, ca_file: str | None, plaintext: bool) -> None:
    """Use the backend at ENDPOINT from now on (TLS unless --plaintext).

    The bearer token is read from stdin if it is piped, otherwise asked for
    without echo (empty: none). The endpoint must answer GetBackendInfo with
    this token and a compatible contract before anything is saved. The token
    is kept in the OS keychain, or in $STIGMER_HOME/token (0600) where there
    is none; never in config.json.
    """
    from stigmer_backend.backends.wire import format_endpoint, is_header_safe, parse_endpoint

    if not endpoint:
        raise click.UsageError(
            "login needs the backend's address: --endpoint HOST:PORT (for a `stigmer server` on this machine "
            "without TLS: --endpoint 127.0.0.1:7780 --plaintext < token); `stigmer logout` returns to the local backend"
        )
    try:
        endpoint = format_endpoint(*parse_endpoint(endpoint))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--endpoint") from None
    if plaintext and ca_file:
        raise click.UsageError("--ca is for TLS; it cannot be combined with --plaintext")
    token = _read_token()
    if token and not is_header_safe(token):
        raise click.BadParameter("the token must be printable ASCII without spaces", param_hint="the token")

    from ._runtime import run

    async def main() -> None:
        from stigmer_backend.backends.cloud import CloudBackend, RetryPolicy
        from stigmer_backend.backends.cloud.credentials import delete_token, save_token
        from stigmer_backend.gen.stigmer.backend import v1 as pb

        from ._context import Context, load_context, save_context

        async with CloudBackend(
            endpoint,
            token=token or None,
            tls=not plaintext,
            ca_file=ca_file,
            timeout=LOGIN_TIMEOUT,
            retry=RetryPolicy(max_attempts=2),
        ) as backend:
            info = await backend.get_backend_info(pb.GetBackendInfoRequest())
        if info.contract_version.partition(".")[0] != SUPPORTED_CONTRACT_MAJOR:
            raise click.ClickException(
                f"{endpoint} implements contract {info.contract_version or '(none)'}; "
                f"this stigmer speaks {SUPPORTED_CONTRACT_MAJOR}.x"
            )
        previous = load_context()
        if token:
            try:
                where = save_token(endpoint, token)
            except OSError as error:
                raise click.ClickException(f"cannot save the token: {error.strerror or error}") from None
        else:
            delete_token(endpoint)
            where = None
        save_context(Context(endpoint=endpoint, ca_file=_absolute(ca_file), plaintext=plaintext))
        if previous.is_remote and previous.endpoint != endpoint:
            delete_token(previous.endpoint)  # one login at a time: no token left behind for the old one
        status(
            f"logged in to {endpoint} ({info.backend_kind} {info.backend_version}, contract {info.contract_version})"
        )
        status(f"token kept in {where}" if where else "no token: the server does not require one")

    run(main)


def _absolute(path: str | None) -> str:
    from pathlib import Path

    return str(Path(path).resolve()) if path else ""


@click.command()
def logout() -> None:
    """Forget the remote endpoint and its token; back to the local SQLite backend."""
    from stigmer_backend.backends.cloud.credentials import delete_token

    from ._context import Context, load_context, save_context

    context = load_context()
    if not context.is_remote:
        status("not logged in: already using the local backend")
        return
    delete_token(context.endpoint)
    save_context(Context())
    status(f"logged out of {context.endpoint}; using the local backend")


@click.command()
@output_option
def context(output: str) -> None:
    """Show the active backend: local or remote, where, and the contract version it reports."""
    from ._context import load_context
    from ._runtime import open_backend, run

    active = load_context()

    async def main() -> None:
        from grpclib import GRPCError

        from stigmer_backend.gen.stigmer.backend import v1 as pb

        if active.is_remote:
            transport = "plaintext" if active.plaintext else f"TLS, CA {active.ca_file}" if active.ca_file else "TLS"
            where = f"{active.endpoint} ({transport})"
        elif active.url:
            where = active.url
        else:
            from stigmer_backend.backends.sqlite import default_database_path

            where = str(default_database_path())
        failure = None
        info = pb.GetBackendInfoResponse()
        try:
            async with open_backend() as backend:
                info = await backend.get_backend_info(pb.GetBackendInfoRequest())
        except GRPCError as error:
            failure = error
        # Proto JSON names for the backend's own answer, as everywhere in -o json/yaml.
        data = {
            "mode": "remote" if active.is_remote else "local",
            "where": where,
            **info.to_dict(include_default_values=True),
        }
        emit(
            output,
            data,
            [
                ("MODE", lambda row: row["mode"]),
                ("WHERE", lambda row: row["where"]),
                ("CONTRACT", lambda row: row["contractVersion"] or None),
                ("BACKEND", lambda row: f"{row['backendKind']} {row['backendVersion']}".strip() or None),
            ],
        )
        if failure is not None:
            raise failure  # the data above still says where; run() reports why it did not answer

    run(main)
