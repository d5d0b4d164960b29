"""The pytest plugin behind ``stigmer conformance run`` (entry point ``pytest11``).

Inert unless ``--stigmer-target``, ``--stigmer-server-command`` or
``--stigmer-backend-fixture`` is given, so installing Stigmer never changes
another project's test run. When active:

- registers a ``run.ConformanceRun`` (the session's state and the hooks below)
  and the fixtures of ``fixtures``, which derive from ``backend``:
  ``client`` (tracked, synchronous), ``capabilities`` and ``restart``; with a
  target, opens it once per session (see ``targets``) and provides
  ``backend`` from it; with ``--stigmer-backend-fixture``, the caller's own
  ``backend`` fixture is the backend under test;
- gives every test a stable conformance id, ``area/RPC/check[/case]``
  (``state_machine/UpdateExecutionStatus/transition/SUCCEEDED->RUNNING/rejected``),
  used by the known-failures file and recorded in the JUnit report;
- skips a test only for an optional capability the backend does not report
  (``GetBackendInfo``) or a target that cannot be restarted; any other skip
  counts as a failure, because required behaviour cannot be skipped;
- marks tests matched by the known-failures file (one fnmatch pattern per
  line, ``#`` comments) as expected failures, strictly: a listed test that
  passes fails the run, so the list cannot rot;
- checks first that the target answers ``GetBackendInfo`` (a target that is
  unreachable, speaks TLS or plaintext unlike the options, or refuses the
  token is one ``ERROR:`` line, before any test runs);
- writes a JSON summary (``--stigmer-json-report``) and prints the report of
  ``report``: a line per failure (stable id, expected against actual, the
  contract sentence it checks), a table per area, and the verdict, last.
"""

from __future__ import annotations

import pytest

from .run import RUN, ConformanceRun

__all__: list[str] = []  # pytest finds the hooks by name; nothing here is for importing


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stigmer", "Stigmer backend conformance")
    group.addoption("--stigmer-target", help="sqlite | postgresql://... | module:factory | host:port")
    group.addoption("--stigmer-server-command", help="command that starts a backend server and prints host:port")
    group.addoption(
        "--stigmer-backend-fixture",
        action="store_true",
        help="no target: the backend under test is the `backend` fixture your conftest defines",
    )
    group.addoption("--stigmer-adapter", choices=["stub", "cloud"], default="stub", help="how to call gRPC targets")
    group.addoption("--stigmer-ca", help="CA certificate file for a TLS target")
    group.addoption("--stigmer-tls", action="store_true", help="use TLS with the system trust store")
    group.addoption("--stigmer-token-file", help="file holding the bearer token (else $STIGMER_CONFORMANCE_TOKEN)")
    group.addoption("--stigmer-known-failures", help="file of conformance-id patterns that may fail")
    group.addoption("--stigmer-json-report", help="write a JSON summary here")
    group.addoption(
        "--stigmer-quiet", action="store_true", help="no progress characters: only the report, for people to read"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_capability(capability): skip unless the backend reports it")
    config.addinivalue_line("markers", "requires_restart: skip unless the target can be restarted")
    has_target = bool(config.getoption("stigmer_target") or config.getoption("stigmer_server_command"))
    if has_target or config.getoption("stigmer_backend_fixture"):
        from . import fixtures, target_backend

        run = ConformanceRun(config)
        config.stash[RUN] = run
        config.pluginmanager.register(run, "stigmer-conformance-run")
        config.pluginmanager.register(fixtures, "stigmer-conformance-fixtures")
        if has_target:
            config.pluginmanager.register(target_backend, "stigmer-conformance-target")
