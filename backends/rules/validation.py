"""Request validation: every limit and pattern the proto states, in one place.

Each ``validate_*`` function checks one request type and raises
``INVALID_ARGUMENT`` naming the first invalid field (by its proto path, for
example ``spec.env[2].name``). Nothing is read or written before validation,
so a rejected request changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import timedelta
from urllib.parse import urlsplit

from stigmer_backend.gen.google.protobuf import ListValue, Struct, Value
from stigmer_backend.gen.stigmer.backend import v1 as pb

from . import errors, secret_refs

__all__ = [
    "AGENT_NAME",
    "MAX_ERROR_MESSAGE_BYTES",
    "MAX_SECRET_VALUE_BYTES",
    "MAX_STRUCT_BYTES",
    "MAX_STRUCT_DEPTH",
    "MAX_TOKEN_CHARS",
    "TOKEN",
    "validate_agent_instance_ref",
    "validate_apply_agent_instance",
    "validate_cancel_execution",
    "validate_create_execution",
    "validate_execution_id",
    "validate_get_execution_context",
    "validate_id",
    "validate_list_executions",
    "validate_put_secret",
    "validate_runner_id",
    "validate_secret_name",
    "validate_update_execution_status",
]

AGENT_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_TOKEN_CHARS = 128  # request_id, runner_id
TOKEN = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_TOKEN_CHARS}}}")
"""An identifier the caller chooses (``request_id``, ``runner_id``), whole-string (``fullmatch``)."""
_PROVIDER = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

MAX_ID_CHARS = 64
MAX_INPUT_MESSAGE_BYTES = 1_048_576
MAX_STRUCT_BYTES = 1_048_576
MAX_STRUCT_DEPTH = 32
"""Objects and lists nested in a ``Struct``, the outer object counting as 1. Protobuf parsers stop
at 100 levels of messages (each level of JSON costs about three), so a deeper value could be
stored but never read back by another client."""
MAX_PHASE_FILTERS = 16
MAX_STATUS_MESSAGE_BYTES = 4_096
MAX_OUTPUT_TEXT_BYTES = 1_048_576
MAX_ERROR_MESSAGE_BYTES = 16_384
MAX_ERROR_DETAILS = 64
MAX_DETAIL_KEY_BYTES = 128
MAX_DETAIL_VALUE_BYTES = 4_096
MAX_INSTRUCTIONS_BYTES = 262_144
MAX_MODEL_NAME_BYTES = 256
MAX_ENDPOINT_BYTES = 2_048
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE_BYTES = 32_768
MAX_SECRET_VALUE_BYTES = 65_536
MIN_LEASE = timedelta(seconds=1)
MAX_LEASE = timedelta(hours=24)

_PHASES = frozenset(pb.ExecutionPhase) - {pb.ExecutionPhase.UNSPECIFIED}


def _utf8_size(value: str, field: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise errors.invalid_argument(field, "is not valid UTF-8") from None


def _text(value: str, field: str, max_bytes: int, *, required: bool = False) -> None:
    size = _utf8_size(value, field)
    if required and not value:
        raise errors.invalid_argument(field, "is required")
    if size > max_bytes:
        raise errors.invalid_argument(field, f"must be at most {max_bytes} bytes (got {size})")


def _pattern(value: str, field: str, pattern: re.Pattern[str], described: str) -> None:
    if not value:
        raise errors.invalid_argument(field, "is required")
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 80 else value[:80] + "…"
        raise errors.invalid_argument(field, f"{shown!r} is not {described}")


def _references(value: str, field: str) -> None:
    try:
        secret_refs.find(value)
    except secret_refs.MalformedReference as problem:
        raise errors.invalid_argument(field, str(problem)) from None


def _struct_problem(value: Struct) -> str | None:
    """Why ``value`` is not a JSON object the contract accepts, or None; iterative, so any depth is walked safely.

    Nesting past ``MAX_STRUCT_DEPTH``, a ``Value`` with no kind set and a NaN or infinite number are
    valid protobuf but not JSON: stored, they could not be turned into JSON, so the call would fail
    half-way through its write, and they are refused first.
    """
    pending: list[tuple[Struct | ListValue, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_STRUCT_DEPTH:
            return f"must nest objects and lists at most {MAX_STRUCT_DEPTH} deep"
        children: Iterable[Value] = node.fields.values() if isinstance(node, Struct) else node.values
        for child in children:
            if child.struct_value is not None:
                pending.append((child.struct_value, depth + 1))
            elif child.list_value is not None:
                pending.append((child.list_value, depth + 1))
            elif child.number_value is not None:
                if not math.isfinite(child.number_value):
                    return f"holds the number {child.number_value}, which JSON cannot hold"
            elif child.null_value is None and child.string_value is None and child.bool_value is None:
                return "holds a value with no kind set (not null, a number, a string, a bool, an object or a list)"
    return None


def _struct(value: Struct | None, field: str) -> None:
    if value is not None:
        problem = _struct_problem(value)
        if problem:
            raise errors.invalid_argument(field, problem)
        size = len(bytes(value))
        if size > MAX_STRUCT_BYTES:
            raise errors.invalid_argument(field, f"must be at most {MAX_STRUCT_BYTES} bytes encoded (got {size})")


def _phase(value: int, field: str) -> None:
    if value not in _PHASES:
        raise errors.invalid_argument(field, f"{value} is not a valid execution phase")


def validate_id(value: str, field: str) -> None:
    """A backend-assigned identifier (an execution's or an agent instance's), in the field ``field``."""
    if not value:
        raise errors.invalid_argument(field, "is required")
    if len(value) > MAX_ID_CHARS or not value.isascii() or not value.isprintable():
        raise errors.invalid_argument(field, f"must be 1 to {MAX_ID_CHARS} printable ASCII characters")


def validate_execution_id(value: str, field: str = "execution_id") -> None:
    validate_id(value, field)


def validate_secret_name(value: str, field: str = "name") -> None:
    _pattern(
        value,
        field,
        secret_refs.SECRET_NAME,
        f"a valid secret name (^[A-Za-z_][A-Za-z0-9_]*$, at most {secret_refs.MAX_SECRET_NAME_CHARS})",
    )


def validate_agent_instance_ref(ref: pb.AgentInstanceRef | None, field: str) -> pb.AgentInstanceRef:
    """``ref``, given and valid (its id if set, else its name), for the caller to use as such."""
    if ref is not None and ref.id is not None:
        validate_id(ref.id, f"{field}.id")
    elif ref is not None and ref.name is not None:
        _pattern(
            ref.name, f"{field}.name", AGENT_NAME, "a valid agent instance name (^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$)"
        )
    else:
        raise errors.invalid_argument(field, "an agent instance id or name is required")
    return ref


def validate_create_execution(request: pb.CreateExecutionRequest) -> None:
    _pattern(
        request.request_id, "request_id", TOKEN, f"a valid request id (^[A-Za-z0-9._:-]+$, at most {MAX_TOKEN_CHARS})"
    )
    validate_agent_instance_ref(request.agent_instance, "agent_instance")
    if request.input is None:
        raise errors.invalid_argument("input", "is required")
    _text(request.input.message, "input.message", MAX_INPUT_MESSAGE_BYTES)
    _struct(request.input.data, "input.data")
    if not request.input.message and request.input.data is None:
        raise errors.invalid_argument("input.message", "is required unless input.data is set")


def validate_list_executions(request: pb.ListExecutionsRequest) -> None:
    if request.page_size < 0:
        raise errors.invalid_argument("page_size", f"must not be negative (got {request.page_size})")
    if request.agent_instance_id:
        validate_id(request.agent_instance_id, "agent_instance_id")
    if len(request.phases) > MAX_PHASE_FILTERS:
        raise errors.invalid_argument(
            "phases", f"must have at most {MAX_PHASE_FILTERS} entries (got {len(request.phases)})"
        )
    for i, phase in enumerate(request.phases):
        _phase(phase, f"phases[{i}]")


def _runner_id(value: str) -> None:
    _pattern(value, "runner_id", TOKEN, f"a valid runner id (^[A-Za-z0-9._:-]+$, at most {MAX_TOKEN_CHARS})")


def validate_runner_id(value: str) -> None:
    """``INVALID_ARGUMENT`` unless ``value`` is a runner id the contract accepts (a runner checks its own at start)."""
    _runner_id(value)


def _expected_version(value: int) -> None:
    if value < 0:
        raise errors.invalid_argument("expected_version", f"must not be negative (got {value})")


def _output(output: pb.ExecutionOutput | None) -> None:
    if output is not None:
        _text(output.text, "output.text", MAX_OUTPUT_TEXT_BYTES)
        _struct(output.data, "output.data")


def _error(error: pb.ExecutionError) -> None:
    _pattern(error.code, "error.code", _ERROR_CODE, "a valid error code (^[A-Z][A-Z0-9_]{0,63}$)")
    _text(error.message, "error.message", MAX_ERROR_MESSAGE_BYTES)
    if len(error.details) > MAX_ERROR_DETAILS:
        raise errors.invalid_argument("error.details", f"must have at most {MAX_ERROR_DETAILS} entries")
    for key, value in error.details.items():
        if not key or _utf8_size(key, "error.details") > MAX_DETAIL_KEY_BYTES:
            raise errors.invalid_argument("error.details", f"keys must be 1 to {MAX_DETAIL_KEY_BYTES} bytes")
        _text(value, f"error.details[{key!r}]", MAX_DETAIL_VALUE_BYTES)


def validate_update_execution_status(request: pb.UpdateExecutionStatusRequest) -> None:
    validate_execution_id(request.execution_id)
    _phase(request.phase, "phase")
    _runner_id(request.runner_id)
    _expected_version(request.expected_version)
    _text(request.message, "message", MAX_STATUS_MESSAGE_BYTES)
    _output(request.output)
    if request.phase == pb.ExecutionPhase.FAILED:
        if request.error is None:
            raise errors.invalid_argument("error", "is required when phase is EXECUTION_PHASE_FAILED")
        _error(request.error)
    elif request.error is not None:
        raise errors.invalid_argument("error", "is allowed only when phase is EXECUTION_PHASE_FAILED")
    if request.lease_duration is not None:
        if request.phase != pb.ExecutionPhase.RUNNING:
            raise errors.invalid_argument("lease_duration", "is allowed only when phase is EXECUTION_PHASE_RUNNING")
        if not MIN_LEASE <= request.lease_duration <= MAX_LEASE:
            raise errors.invalid_argument("lease_duration", "must be from 1 second to 24 hours")


def validate_cancel_execution(request: pb.CancelExecutionRequest) -> None:
    validate_execution_id(request.execution_id)
    _text(request.reason, "reason", MAX_STATUS_MESSAGE_BYTES)
    _expected_version(request.expected_version)


def validate_get_execution_context(request: pb.GetExecutionContextRequest) -> None:
    validate_execution_id(request.execution_id)
    _runner_id(request.runner_id)


def _model(model: pb.ModelConfig | None) -> None:
    if model is None:
        raise errors.invalid_argument("spec.model", "is required")
    _pattern(model.provider, "spec.model.provider", _PROVIDER, "a valid provider (^[a-z][a-z0-9_.-]{0,63}$)")
    _text(model.model, "spec.model.model", MAX_MODEL_NAME_BYTES, required=True)
    if _CONTROL.search(model.model):
        raise errors.invalid_argument("spec.model.model", "must not contain control characters")
    if model.endpoint:
        _text(model.endpoint, "spec.model.endpoint", MAX_ENDPOINT_BYTES)
        parts = urlsplit(model.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROL.search(model.endpoint):
            raise errors.invalid_argument("spec.model.endpoint", "must be an absolute http:// or https:// URL")
    if model.credentials and not secret_refs.is_single_reference(model.credentials):
        raise errors.invalid_argument(
            "spec.model.credentials", "must be exactly one secret reference like ${.secrets.NAME}, never a literal"
        )


def validate_apply_agent_instance(request: pb.ApplyAgentInstanceRequest) -> None:
    _pattern(request.name, "name", AGENT_NAME, "a valid agent instance name (^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$)")
    spec = request.spec
    if spec is None:
        raise errors.invalid_argument("spec", "is required")
    _text(spec.instructions, "spec.instructions", MAX_INSTRUCTIONS_BYTES)
    _model(spec.model)
    if len(spec.env) > MAX_ENV_ENTRIES:
        raise errors.invalid_argument("spec.env", f"must have at most {MAX_ENV_ENTRIES} entries (got {len(spec.env)})")
    seen: set[str] = set()
    for i, variable in enumerate(spec.env):
        field = f"spec.env[{i}]"
        _pattern(variable.name, f"{field}.name", _ENV_NAME, "a valid variable name (^[A-Za-z_][A-Za-z0-9_]*$)")
        if variable.name in seen:
            raise errors.invalid_argument(f"{field}.name", f"{variable.name!r} appears more than once")
        seen.add(variable.name)
        _text(variable.value, f"{field}.value", MAX_ENV_VALUE_BYTES)
        _references(variable.value, f"{field}.value")


def validate_put_secret(request: pb.PutSecretRequest) -> None:
    validate_secret_name(request.name)
    # The value is never quoted in a message, only measured.
    size = _utf8_size(request.value, "value")
    if not 1 <= size <= MAX_SECRET_VALUE_BYTES:
        raise errors.invalid_argument("value", f"must be 1 to {MAX_SECRET_VALUE_BYTES} bytes (got {size})")
