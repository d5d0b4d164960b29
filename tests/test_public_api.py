"""The names each public module exports are pinned: a change to them is a deliberate API change."""

import importlib

import pytest

PUBLIC = {
    "stigmer_backend.conformance": ["SUITE_DIR", "SUITE_VERSION", "conformance_id"],
    "stigmer_backend.conformance.client": [
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
    "stigmer_backend.conformance.fixtures": [
        "capabilities",
        "client",
        "restart",
        "stigmer_requirements",
        "stigmer_run",
    ],
    "stigmer_backend.conformance.target_backend": ["backend"],
    "stigmer_backend.backends.wire": [
        "authorization",
        "client_ssl_context",
        "format_endpoint",
        "is_header_safe",
        "parse_endpoint",
    ],
    "stigmer_backend.backends.base": ["Backend"],
    "stigmer_backend.backends.registry": ["STORAGE_BACKENDS", "open_storage", "require_kind", "storage_kind"],
    "stigmer_backend.backends.sqlite": ["SqliteBackend", "default_database_path"],
    "stigmer_backend.backends.postgres": ["PostgresBackend"],
    "stigmer_backend.backends.memory": ["MemoryBackend"],
    "stigmer_backend.backends.cloud": [
        "CloudBackend",
        "DEFAULT_TIMEOUT",
        "RPC_NAMES",
        "RetryPolicy",
        "client_ssl_context",
    ],
    "stigmer_backend.backends.keychain": ["Keychain", "KeychainUnavailable", "open_keychain"],
    "stigmer_backend.runner.masking": ["MASK", "Masker", "MaskingFilter", "SecretValue"],
    "stigmer_backend.runner.resolver": ["UnresolvedReference", "resolve"],
    "stigmer_backend.runner.executor": ["default_runner_id", "run_execution"],
    "stigmer_backend.runner.steps": ["call_model", "claim", "failure", "renew", "report"],
    "stigmer_backend.runner.worker": ["Worker"],
    "stigmer_backend.backends.rules.truncation": [
        "ELLIPSIS",
        "fit_error_message",
        "fit_output_text",
        "fit_status_message",
        "truncate_utf8",
    ],
    "stigmer_backend.fullstack.workflow": [
        "TASK_QUEUE",
        "WORKFLOW",
        "ExecutionCancel",
        "ExecutionEnd",
        "ExecutionRun",
        "ExecutionWorkflow",
    ],
    "stigmer_backend.fullstack.activities": ["ExecutionActivities"],
    "stigmer_backend.fullstack.client": ["cancel_workflow", "start_workflow"],
    "stigmer_backend.fullstack.worker": ["serve"],
    "stigmer_backend.fullstack.requirements": ["MISSING_HINT", "MissingExtra", "require_sdk", "temporal_binary"],
    "stigmer_backend.fullstack.stack": [
        "FAILED",
        "READY",
        "RESTARTING",
        "STARTING",
        "Part",
        "Stack",
        "StackError",
        "describe_exit",
        "exited",
        "free_ports",
        "load_stack",
        "log_since",
        "open_log",
        "ready_stack",
        "save_stack",
        "stack_dir",
        "start_stack",
        "start_ticks",
        "stigmer_script",
        "stop_parts",
        "stop_stack",
        "temporal_health",
        "temporal_health_at",
    ],
    "stigmer_backend.fullstack.supervisor": [
        "FIRST_DELAY",
        "MAX_DELAY",
        "MAX_QUICK_FAILURES",
        "STABLE_AFTER",
        "restart_delay",
        "supervise",
    ],
    "stigmer_backend.server.launch": ["LISTENING_PREFIX", "ServerProcess", "ServerStartError"],
    "stigmer_backend.proto": ["ROOT"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_exported_names_are_pinned(module):
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ names {name}, which does not exist"


def test_every_python_backend_is_the_generated_service():
    from stigmer_backend.backends.base import Backend
    from stigmer_backend.backends.cloud import CloudBackend
    from stigmer_backend.backends.memory import MemoryBackend
    from stigmer_backend.backends.registry import STORAGE_BACKENDS
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    for backend in (MemoryBackend, CloudBackend):
        assert issubclass(backend, Backend) and issubclass(backend, pb.BackendServiceBase)
    for kind, target in STORAGE_BACKENDS.items():
        module, _, name = target.partition(":")
        backend = getattr(importlib.import_module(module), name)
        assert issubclass(backend, Backend) and issubclass(backend, pb.BackendServiceBase), kind
        assert backend.kind == kind, f"{target} reports kind {backend.kind!r} in GetBackendInfo, registered as {kind!r}"
