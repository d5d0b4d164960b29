"""Executions and agent instances to SQLite rows and back.

Scalars map to columns (times as integer microseconds since the epoch), so
every field can be filtered and indexed and a status write touches only its
columns; structured values (``google.protobuf.Struct``, error details) are
stored as JSON text; an agent instance version is stored as its canonical
proto JSON, since it is written once per apply and read once per execution.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._schema import STATUS_COLUMN_NAMES

__all__ = [
    "EXECUTION_COLUMNS",
    "SqlValue",
    "StoredRow",
    "agent_instance_from_json",
    "agent_instance_to_json",
    "execution_from_row",
    "execution_row",
    "micros",
    "status_from_row",
    "status_row",
    "timestamp",
]

SqlValue: TypeAlias = int | str | None
"""What a column of ours holds (bound as a statement parameter)."""

StoredRow: TypeAlias = sqlite3.Row | Mapping[str, Any]
"""A row as read (``sqlite3.Row``) or as this backend last wrote it (``_recent``), by column name."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

EXECUTION_COLUMNS = (
    "id",
    "request_id",
    "agent_instance_id",
    "agent_instance_name",
    "agent_version",
    "input_message",
    "input_data",
    "version",
    "create_us",
    "update_us",
    *STATUS_COLUMN_NAMES,
)


def micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def timestamp(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _struct_json(value: Struct | None) -> str | None:
    return None if value is None else json.dumps(value.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _struct(text: str | None) -> Struct | None:
    return None if text is None else Struct.from_dict(json.loads(text))


def status_row(status: pb.ExecutionStatus) -> tuple[SqlValue, ...]:
    """Values of the status columns, in ``STATUS_COLUMN_NAMES`` order."""
    output, error = status.output, status.error
    return (
        int(status.phase),
        status.message,
        None if output is None else output.text,
        None if output is None else _struct_json(output.data),
        None if error is None else error.code,
        None if error is None else error.message,
        None if error is None else json.dumps(error.details, ensure_ascii=False, separators=(",", ":")),
        status.runner_id,
        micros(status.lease_expire_time),
        micros(status.start_time),
        micros(status.end_time),
    )


def status_from_row(row: StoredRow) -> pb.ExecutionStatus:
    output = error = None
    if row["output_text"] is not None:
        output = pb.ExecutionOutput(text=row["output_text"], data=_struct(row["output_data"]))
    if row["error_code"] is not None:
        error = pb.ExecutionError(
            code=row["error_code"], message=row["error_message"], details=json.loads(row["error_details"])
        )
    return pb.ExecutionStatus(
        phase=pb.ExecutionPhase(row["phase"]),
        message=row["message"],
        output=output,
        error=error,
        runner_id=row["runner_id"],
        lease_expire_time=timestamp(row["lease_expire_us"]),
        start_time=timestamp(row["start_us"]),
        end_time=timestamp(row["end_us"]),
    )


def execution_row(execution: pb.Execution, agent_version: int) -> tuple[SqlValue, ...]:
    """Values of ``EXECUTION_COLUMNS`` for a new execution."""
    # A new execution always has both (``rules.executions.new_execution``, after validation).
    assert execution.input is not None and execution.status is not None
    return (
        execution.id,
        execution.request_id,
        execution.agent_instance_id,
        execution.agent_instance_name,
        agent_version,
        execution.input.message,
        _struct_json(execution.input.data),
        execution.version,
        micros(execution.create_time),
        micros(execution.update_time),
        *status_row(execution.status),
    )


def execution_from_row(row: StoredRow) -> pb.Execution:
    """The execution of an ``executions`` row (columns ``EXECUTION_COLUMNS``)."""
    return pb.Execution(
        id=row["id"],
        agent_instance_id=row["agent_instance_id"],
        agent_instance_name=row["agent_instance_name"],
        input=pb.ExecutionInput(message=row["input_message"], data=_struct(row["input_data"])),
        status=status_from_row(row),
        version=row["version"],
        request_id=row["request_id"],
        create_time=timestamp(row["create_us"]),
        update_time=timestamp(row["update_us"]),
    )


def agent_instance_to_json(agent: pb.AgentInstance) -> str:
    return agent.to_json()


def agent_instance_from_json(text: str) -> pb.AgentInstance:
    return pb.AgentInstance.from_json(text)
