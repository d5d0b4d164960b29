"""Executions and agent instances to PostgreSQL rows and back.

Scalars map to columns (times as ``timestamptz``, microsecond precision like
the contract's timestamps in practice), so every field can be filtered and
indexed and a status write touches only its columns; structured values are
JSON text, returned exactly as stored.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import psycopg

from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..rules.executions import status_of
from ._schema import STATUS_COLUMN_NAMES

__all__ = [
    "EXECUTION_COLUMNS",
    "Connection",
    "Row",
    "agent_instance_from_json",
    "agent_instance_to_json",
    "execution_from_row",
    "execution_row",
    "status_from_row",
    "status_row",
]

Row: TypeAlias = dict[str, Any]
"""A row as the pool's connections return it (``psycopg.rows.dict_row``)."""
Connection: TypeAlias = psycopg.AsyncConnection[Row]

EXECUTION_COLUMNS = (
    "id",
    "request_id",
    "agent_instance_id",
    "agent_instance_name",
    "agent_version",
    "input_message",
    "input_data",
    "version",
    "create_time",
    "update_time",
    *STATUS_COLUMN_NAMES,
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _utf8(text: str) -> bytes:
    return text.encode()


def _text(data: bytes) -> str:
    return bytes(data).decode()


def _struct_json(value: Struct | None) -> str | None:
    return None if value is None else _json(value.to_dict())


def _struct(text: str | None) -> Struct | None:
    return None if text is None else Struct.from_dict(json.loads(text))


def status_row(status: pb.ExecutionStatus) -> tuple[object, ...]:
    """Values of the status columns, in ``STATUS_COLUMN_NAMES`` order."""
    output, error = status.output, status.error
    return (
        int(status.phase),
        _utf8(status.message),
        None if output is None else _utf8(output.text),
        None if output is None else _struct_json(output.data),
        None if error is None else error.code,
        None if error is None else _utf8(error.message),
        None if error is None else _json(error.details),
        status.runner_id,
        status.lease_expire_time,
        status.start_time,
        status.end_time,
    )


def status_from_row(row: Row) -> pb.ExecutionStatus:
    output = error = None
    if row["output_text"] is not None:
        output = pb.ExecutionOutput(text=_text(row["output_text"]), data=_struct(row["output_data"]))
    if row["error_code"] is not None:
        error = pb.ExecutionError(
            code=row["error_code"], message=_text(row["error_message"]), details=json.loads(row["error_details"])
        )
    return pb.ExecutionStatus(
        phase=pb.ExecutionPhase(row["phase"]),
        message=_text(row["message"]),
        output=output,
        error=error,
        runner_id=row["runner_id"],
        lease_expire_time=row["lease_expire_time"],
        start_time=row["start_time"],
        end_time=row["end_time"],
    )


def execution_row(execution: pb.Execution, agent_version: int) -> tuple[object, ...]:
    """Values of ``EXECUTION_COLUMNS`` for a new execution."""
    execution_input = execution.input
    assert execution_input is not None  # validate_create_execution requires it
    return (
        execution.id,
        execution.request_id,
        execution.agent_instance_id,
        execution.agent_instance_name,
        agent_version,
        _utf8(execution_input.message),
        _struct_json(execution_input.data),
        execution.version,
        execution.create_time,
        execution.update_time,
        *status_row(status_of(execution)),
    )


def execution_from_row(row: Row) -> pb.Execution:
    return pb.Execution(
        id=row["id"],
        agent_instance_id=row["agent_instance_id"],
        agent_instance_name=row["agent_instance_name"],
        input=pb.ExecutionInput(message=_text(row["input_message"]), data=_struct(row["input_data"])),
        status=status_from_row(row),
        version=row["version"],
        request_id=row["request_id"],
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


def agent_instance_to_json(agent: pb.AgentInstance) -> str:
    return agent.to_json()


def agent_instance_from_json(text: str) -> pb.AgentInstance:
    return pb.AgentInstance.from_json(text)
