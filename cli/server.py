"""``stigmer server``: serve a backend over gRPC for runners and CLIs elsewhere.

The local SQLite file by default; ``--backend URL`` serves any storage
backend registered in ``backends/registry.py`` instead (``postgresql://…``: a PostgreSQL
database, which any number of replicas may share).
"""

from __future__ import annotations

import click

DEFAULT_PORT = 7780
TOKEN_ENV = "STIGMER_SERVER_TOKEN"
BACKEND_ENV = "STIGMER_SERVER_BACKEND"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 or :: for all).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port; 0 picks a free one (read it from the 'listening on' line).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    help="SQLite database to serve  [default: the CLI context's storage, else $STIGMER_HOME/local.db]",
)
@click.option(
    "--backend",
    "backend_url",
    envvar=BACKEND_ENV,
    metavar="URL",
    help=f"Serve this database instead of SQLite, e.g. postgresql://user@host/db (replicas may share it). "
    f"Or set {BACKEND_ENV}; give the password by PGPASSWORD or ~/.pgpass, not here.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    help="Most connections a --backend database server backend holds open (plus one while executions are "
    "watched)  [default: 10]",
)
@click.option(
    "--token-file",
    type=click.Path(),
    help=f"File holding the bearer token clients must send (mode 0600). Or set {TOKEN_ENV}.",
)
@click.option(
    "--tokens-file",
    type=click.Path(),
    help="File (mode 0600) of lines 'ROLE NAME TOKEN' (roles admin, person, runner): least privilege, see SECURITY.md.",
)
@click.option("--tls-cert", type=click.Path(), help="PEM certificate chain; enables TLS (needs --tls-key).")
@click.option("--tls-key", type=click.Path(), help="PEM private key (unencrypted) of --tls-cert.")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="Seconds SIGTERM/SIGINT waits for calls in flight.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(1024),
    default=4 * 1024 * 1024,
    show_default=True,
    help="Largest request message accepted; a larger one fails with RESOURCE_EXHAUSTED unread.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Open connections at most; a new one closes the longest-idle one.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1),
    default=300.0,
    show_default=True,
    help="Seconds a connection without calls stays open (one that sends nothing: 10 s, or this if less).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every call (method, peer, duration) to stderr.")
def server(
    host: str,
    port: int,
    db_path: str | None,
    backend_url: str | None,
    pool_size: int | None,
    token_file: str | None,
    tokens_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    grace: float,
    max_request_bytes: int,
    max_connections: int,
    idle_timeout: float,
    verbose: bool,
) -> None:
    """Serve a Stigmer backend over gRPC (BackendService, health, reflection).

    \b
    Listens on 127.0.0.1 by default. Clients authenticate with a bearer token
    ('authorization: Bearer TOKEN') taken from --token-file or the environment
    variable STIGMER_SERVER_TOKEN; health checks need none. Listening on any
    other than a loopback address requires a token. Prints
    'listening on HOST:PORT' on stdout once it accepts connections; stops
    gracefully on SIGINT or SIGTERM.
    """
    import logging
    import os

    from stigmer_backend.backends.registry import open_storage, storage_kind

    from ._context import LOCAL, REMOTE, load_context
    from ._runtime import run

    kind, url = LOCAL, db_path
    if backend_url is not None:
        if db_path is not None:
            raise click.UsageError("--db and --backend go separately: give one or the other")
        kind, url = storage_kind(backend_url), backend_url
        if kind == LOCAL:
            raise click.UsageError("--backend takes a database URL (postgresql://…); give a SQLite file with --db")
    elif db_path is None:
        # The storage the CLI's context names, as every other command (and `stigmer local`) uses it;
        # a remote context names no storage to serve, so the local file is served then.
        context = load_context()
        if context.kind != REMOTE:
            kind, url = context.kind, context.url or None
    options = {} if pool_size is None else {"pool_size": pool_size}
    if options and kind == LOCAL:
        raise click.UsageError("--pool-size is for a database server given with --backend")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both or neither")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("stigmer_backend").setLevel(logging.DEBUG)

    from stigmer_backend.backends.wire import format_endpoint
    from stigmer_backend.server.startup import (
        StartupError,
        is_loopback,
        listening_socket,
        read_server_token,
        read_server_tokens,
        server_ssl_context,
    )

    try:
        credentials = None
        if tokens_file is not None:
            if token_file is not None or os.environ.get(TOKEN_ENV) is not None:
                raise StartupError(f"give either --tokens-file or a single token (--token-file, {TOKEN_ENV}), not both")
            credentials = read_server_tokens(tokens_file)
        token = read_server_token(token_file, os.environ.get(TOKEN_ENV), TOKEN_ENV)
        if token is None and credentials is None and not is_loopback(host):
            raise StartupError(
                f"refusing to listen on {host} without authentication: "
                f"give a token with --token-file or {TOKEN_ENV}, or listen on 127.0.0.1"
            )
        ssl_context = server_ssl_context(tls_cert, tls_key) if tls_cert and tls_key else None
        sock = listening_socket(host, port)
    except StartupError as error:
        raise click.ClickException(str(error)) from None

    async def main() -> None:
        from stigmer_backend.server.backend_server import serve_until_signalled
        from stigmer_backend.server.collector import settle_for_serving
        from stigmer_backend.server.connections import ConnectionLimits

        from ._output import status

        try:
            backend = await open_storage(kind, url, **options).__aenter__()
        except BaseException:
            sock.close()
            raise
        # Where it serves, as the backend names it: a URL without its password, or the file.
        served = str(getattr(backend, "where", None) or getattr(backend, "path", kind))

        def listening(address: tuple[str, int]) -> None:
            settle_for_serving()
            where = format_endpoint(*address)
            click.echo(f"listening on {where}")
            security = ", ".join(
                [
                    "TLS" if ssl_context else "no TLS",
                    "roles from the tokens file" if credentials else "token required" if token else "no authentication",
                ]
            )
            status(f"serving {served} on {where} ({security}); SIGINT or SIGTERM stops")
            if ssl_context is None and not is_loopback(address[0]):
                status("warning: no TLS on a non-loopback address: the token and all data travel in clear")

        async with backend:
            await serve_until_signalled(
                backend,
                sock,
                token=token,
                credentials=credentials,
                ssl_context=ssl_context,
                grace=grace,
                max_request_bytes=max_request_bytes,
                limits=ConnectionLimits(
                    max_connections=max_connections,
                    idle_timeout=idle_timeout,
                    handshake_timeout=min(10.0, idle_timeout),
                ),
                on_listening=listening,
            )
        status("stopped")

    run(main)
