"""``stigmer conformance run``: the conformance suite against a backend (wraps the pytest plugin)."""

from __future__ import annotations

import click

__all__ = ["conformance"]


@click.group()
def conformance() -> None:
    """Check a backend against the BackendService contract."""


@conformance.command(context_settings={"ignore_unknown_options": True})
@click.option("--target", help="sqlite | postgresql://… | module:factory | host:port (default: sqlite).")
@click.option("--server-command", help="Command that starts a backend server and prints host:port; restartable.")
@click.option("--adapter", type=click.Choice(["stub", "cloud"]), default="stub", show_default=True,
              help="Reach gRPC targets with the generated stub or Stigmer's cloud adapter.")  # fmt: skip
@click.option("--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), help="CA certificate for a TLS target.")
@click.option("--tls", is_flag=True, help="Use TLS with the system trust store.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding a bearer token (default: $STIGMER_CONFORMANCE_TOKEN).")  # fmt: skip
@click.option("--known-failures", type=click.Path(exists=True, dir_okay=False),
              help="Conformance-id patterns that may fail; a listed test that passes fails the run.")  # fmt: skip
@click.option("--junit-xml", type=click.Path(dir_okay=False), help="Write a JUnit XML report here.")
@click.option("--json-report", type=click.Path(dir_okay=False), help="Write a JSON summary here.")
@click.option("-k", "keyword", help="Only tests matching this pytest keyword expression.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def run(
    target: str | None,
    server_command: str | None,
    adapter: str,
    ca_file: str | None,
    tls: bool,
    token_file: str | None,
    known_failures: str | None,
    junit_xml: str | None,
    json_report: str | None,
    keyword: str | None,
    pytest_args: tuple[str, ...],
) -> None:
    """Run the suite and exit 0 only if the backend conforms.

    The target must first answer GetBackendInfo (else one line says why, exit
    4). Then: a line per failure (its stable id, expected against actual, the
    contract sentence it checks), a table per area, and the verdict, last.
    Extra arguments after the options go to pytest: -v shows every test and
    each failure's traceback, -x stops at the first failure.
    """
    import os

    try:
        import hypothesis  # noqa: F401
        import pytest
    except ImportError:
        raise click.ClickException(
            "the conformance suite needs pytest and hypothesis: pip install 'pytest>=8' 'hypothesis>=6.100'"
        ) from None

    from stigmer_backend.conformance import SUITE_DIR

    if target and server_command:
        raise click.UsageError("give --target or --server-command, not both")
    args = [str(SUITE_DIR), "-c", os.devnull, "--rootdir", str(SUITE_DIR), "-p", "no:cacheprovider",
            "-o", "python_files=*.py", "-o", "console_output_style=classic",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "-p", "no:asyncio"]  # fmt: skip
    if _detailed(pytest_args):
        args.append("-q")  # pytest's own report too: each test, each traceback
    else:
        args += ["-qq", "--tb=no", "-rN", "-p", "no:warnings", "--stigmer-quiet"]
    args += ["--stigmer-server-command", server_command] if server_command else ["--stigmer-target", target or "sqlite"]
    args += ["--stigmer-adapter", adapter]
    for flag, value in (("--stigmer-ca", ca_file), ("--stigmer-token-file", token_file),
                        ("--stigmer-known-failures", known_failures), ("--stigmer-json-report", json_report),
                        ("--junitxml", junit_xml), ("-k", keyword)):  # fmt: skip
        if value:
            args += [flag, value]
    if tls:
        args.append("--stigmer-tls")
    code = pytest.main([*args, *pytest_args])
    raise SystemExit(int(code))


def _detailed(pytest_args: tuple[str, ...]) -> bool:
    return any(arg in ("-v", "-vv", "--verbose") or arg.startswith("--tb") for arg in pytest_args)
