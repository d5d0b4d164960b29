"""The names each public module exports are pinned: a change to them is a deliberate API change."""

import importlib

import pytest

PUBLIC = {
    "stigmer.conformance": ["SUITE_DIR", "SUITE_VERSION", "conformance_id"],
    "stigmer.conformance.client": [
        "CALL_TIMEOUT",
        "Client",
        "Watch",
        "expect_status",
        "leaked_values",
        "present",
        "remember_secret_value",
        "request_id",
        "unique_name",
        "unique_secret_name",
    ],
    "stigmer.conformance.fixtures": ["capabilities", "client", "restart", "stigmer_requirements", "stigmer_run"],
    "stigmer.conformance.target_backend": ["backend"],
    "stigmer.backends.wire": [
        "authorization",
        "client_ssl_context",
        "format_endpoint",
        "is_header_safe",
        "parse_endpoint",
    ],
    "stigmer.backends.base": ["Backend"],
    "stigmer.backends.sqlite": ["SqliteBackend", "default_database_path"],
    "stigmer.backends.postgres": ["PostgresBackend"],
    "stigmer.backends.memory": ["MemoryBackend"],
    "stigmer.backends.cloud": ["CloudBackend", "DEFAULT_TIMEOUT", "RPC_NAMES", "RetryPolicy", "client_ssl_context"],
    "stigmer.backends.keychain": ["Keychain", "KeychainUnavailable", "open_keychain"],
    "stigmer.runner.masking": ["MASK", "Masker", "MaskingFilter", "SecretValue"],
    "stigmer.runner.resolver": ["UnresolvedReference", "resolve"],
    "stigmer.runner.executor": ["default_runner_id", "run_execution"],
    "stigmer.runner.steps": ["call_model", "claim", "failure", "renew", "report"],
    "stigmer.runner.worker": ["Worker"],
    "stigmer.backends.rules.truncation": [
        "ELLIPSIS",
        "fit_error_message",
        "fit_output_text",
        "fit_status_message",
        "truncate_utf8",
    ],
    "stigmer.server.launch": ["LISTENING_PREFIX", "ServerProcess", "ServerStartError"],
    "stigmer.proto": ["ROOT"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_names_are_pinned(module):
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ names {name}, which does not exist"


def test_every_python_backend_is_the_generated_service():
    from stigmer.backends.base import Backend
    from stigmer.backends.cloud import CloudBackend
    from stigmer.backends.memory import MemoryBackend
    from stigmer.backends.postgres import PostgresBackend
    from stigmer.backends.sqlite import SqliteBackend
    from stigmer.gen.stigmer.backend import v1 as pb

    for backend in (SqliteBackend, MemoryBackend, CloudBackend, PostgresBackend):
        assert issubclass(backend, Backend) and issubclass(backend, pb.BackendServiceBase)
