"""The PostgreSQL backend: every RPC of ``BackendService`` on a PostgreSQL database.

A thin adapter, like the SQLite one: requests are validated and decided by
``stigmer_backend.backends.rules``; this module only loads rows, hands them to the
rules and writes the result. Many ``stigmer server`` replicas may share one
database, so every read-modify-write locks what it reads: an execution with
``SELECT ... FOR UPDATE`` (a compare-and-set is checked against the
committed row, whichever replica wrote it), and creations, applies and
secret writes under a transaction-level advisory lock, which keeps
identifiers in creation order and request-id retries exact across replicas.
``WatchExecution`` follows ``LISTEN``/``NOTIFY`` (see ``_changes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from grpclib import GRPCError
from grpclib.const import Status
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from stigmer_backend.gen.stigmer.backend import v1 as pb

from ..base import Backend
from ..encryption import KeyRotation, KeyStatus, MasterKey, MasterKeyAdmin, MasterKeySource
from ..rules import agent_instances, errors, execution_context, executions, ids, paging, validation
from ..rules.backend_info import backend_info
from . import _rows
from ._changes import ExecutionChanges
from ._errors import connection_error, describe, storage_error
from ._rows import Connection, Row
from ._schema import RUNNING_PHASE, STATUS_COLUMN_NAMES, migrate
from ._secrets import SECRETS_LOCK, SecretVault

__all__ = ["PostgresBackend"]

_CREATE_LOCK = 0x5374_676D_0001  # execution ids: the newest id is read and exceeded, one creation at a time
_APPLY_LOCK = 0x5374_676D_0002  # agent instance ids and names
_EXECUTION_SELECT = f"SELECT {', '.join(_rows.EXECUTION_COLUMNS)} FROM executions"
_STATUS_ASSIGN = ", ".join(f"{name} = %s" for name in STATUS_COLUMN_NAMES)
_AGENT_SELECT = (
    "SELECT a.id, a.name, a.version, v.agent_instance FROM agent_instances a "
    "JOIN agent_instance_versions v ON v.agent_instance_id = a.id AND v.version = a.version"
)


P = ParamSpec("P")
R = TypeVar("R")


def _now() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _storage_boundary(
    method: Callable[Concatenate[PostgresBackend, P], Awaitable[R]],
) -> Callable[Concatenate[PostgresBackend, P], Coroutine[Any, Any, R]]:
    """Reports psycopg and pool errors as the documented ``GRPCError``, for one coroutine method."""

    @functools.wraps(method)
    async def wrapper(self: PostgresBackend, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except (psycopg.Error, PoolTimeout) as error:
            raise storage_error(error, self.where) from None

    return wrapper


async def _configure(conn: Connection) -> None:
    # Timestamps come back in UTC whatever the server's or role's TimeZone setting.
    await conn.execute("SET TIME ZONE 'UTC'")


class PostgresBackend(Backend, MasterKeyAdmin):
    """``BackendService`` on a PostgreSQL database, shareable by many replicas.

    :param conninfo: a libpq connection string or ``postgresql://`` URI; a
        password is better given by ``PGPASSWORD`` or ``~/.pgpass`` than
        in the string, which the process list shows.
    :param pool_size: the most connections this backend holds open; calls
        beyond it wait for one (up to ``connect_timeout``). One more
        connection listens for changes while anyone watches.
    :param connect_timeout: seconds to wait for a connection.
    :param master_key: where the master key that seals secrets is found;
        default ``MasterKeySource()``. Replicas sharing a database must find
        the same key: give each ``STIGMER_MASTER_KEY``, or the same key file.

    Use as ``async with PostgresBackend(conninfo) as backend`` (or ``await
    backend.open()``): opening connects, migrates the schema and raises
    ``GRPCError`` in one line if the database is unreachable
    (``UNAVAILABLE``), refuses the credentials, does not exist, or has a
    newer schema (``INTERNAL``).

    It keeps its secrets' master key itself, so it is a ``MasterKeyAdmin``
    (``stigmer secret status`` and ``rotate-key``), as the SQLite backend is.
    """

    kind = "postgresql"

    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        master_key: MasterKeySource | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be 1 or more")
        self.conninfo = conninfo
        self.where = describe(conninfo)
        self._pool_size = pool_size
        self._timeout = connect_timeout
        self._vault = SecretVault(self.where, master_key if master_key is not None else MasterKeySource())
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._changes = ExecutionChanges(self._listener_connection)

    # -- lifecycle ----------------------------------------------------------------------------

    async def _connect(self, **kwargs: Any) -> psycopg.AsyncConnection:
        try:
            return await psycopg.AsyncConnection.connect(
                self.conninfo, connect_timeout=max(1, round(self._timeout)), **kwargs
            )
        except psycopg.Error as error:
            raise connection_error(error, self.where) from None

    async def _listener_connection(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=max(1, round(self._timeout))
        )

    async def open(self) -> PostgresBackend:
        """Connects, migrates the schema, and opens the pool. Idempotent."""
        if self._pool is not None:
            return self
        conn = await self._connect(autocommit=True)
        try:
            await migrate(conn, self.where)
        except psycopg.Error as error:
            raise storage_error(error, self.where) from None
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            timeout=self._timeout,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout:
            await pool.close()
            raise GRPCError(Status.UNAVAILABLE, f"cannot keep a connection to {self.where} open") from None
        self._pool = pool
        return self

    async def __aenter__(self) -> PostgresBackend:
        return await self.open()

    async def aclose(self) -> None:
        await self._changes.aclose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Connection]:
        if self._pool is None:
            raise GRPCError(Status.UNAVAILABLE, f"the backend for {self.where} is not open")
        async with self._pool.connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _write(self, *locks: int) -> AsyncIterator[Connection]:
        """One transaction: all of it commits, or none; holding ``locks`` (advisory) until it ends."""
        async with self._conn() as conn, conn.transaction():
            for lock in locks:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            yield conn

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Connection]:
        """One read-only transaction whose statements all see the same committed state."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    # -- executions: loading, lease expiry, storing -------------------------------------------

    @staticmethod
    async def _execution_row(conn: Connection, execution_id: str, *, lock: bool = False) -> Row:
        sql = f"{_EXECUTION_SELECT} WHERE id = %s{' FOR UPDATE' if lock else ''}"
        row = await (await conn.execute(sql, (execution_id,))).fetchone()
        if row is None:
            raise errors.not_found(f"execution {execution_id!r}")
        return row

    @staticmethod
    async def _store_status(conn: Connection, before: pb.Execution, after: pb.Execution) -> None:
        status = _rows.status_row(executions.status_of(after))
        cursor = await conn.execute(
            f"UPDATE executions SET version = %s, update_time = %s, {_STATUS_ASSIGN} WHERE id = %s AND version = %s",
            (after.version, after.update_time, *status, after.id, before.version),
        )
        if cursor.rowcount != 1:  # impossible with the row locked; refuse to guess if it happens
            raise GRPCError(Status.INTERNAL, f"execution {after.id} changed during its own write transaction")

    async def _settled(self, conn: Connection, execution: pb.Execution, now: datetime) -> pb.Execution:
        """``execution`` (locked) after its lease expiry, written; call inside a write transaction."""
        expired = executions.expire_lease(execution, now)
        if expired is None:
            return execution
        await self._store_status(conn, execution, expired)
        return expired

    async def _read_execution(self, execution_id: str, now: datetime) -> pb.Execution:
        async with self._conn() as conn:
            execution = _rows.execution_from_row(await self._execution_row(conn, execution_id))
        if executions.lease_expired(execution, now):
            async with self._write() as conn:
                row = await self._execution_row(conn, execution_id, lock=True)
                execution = await self._settled(conn, _rows.execution_from_row(row), now)
        return execution

    async def _expire_due_leases(self, now: datetime) -> None:
        async with self._conn() as conn:
            due = await (
                await conn.execute(
                    f"SELECT id FROM executions WHERE phase = {RUNNING_PHASE} AND lease_expire_time <= %s", (now,)
                )
            ).fetchall()
        if due:
            async with self._write() as conn:
                # Locked in id order, so two replicas expiring together cannot deadlock.
                rows = await (
                    await conn.execute(
                        f"{_EXECUTION_SELECT} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", ([r["id"] for r in due],)
                    )
                ).fetchall()
                for row in rows:
                    await self._settled(conn, _rows.execution_from_row(row), now)

    async def _change(
        self, execution_id: str, decide: Callable[[pb.Execution, datetime], pb.Execution]
    ) -> pb.Execution:
        """Applies ``decide(current, now) -> new`` to the locked row; a lease expiry found on the way is kept."""
        now = _now()
        refusal: GRPCError | None = None
        async with self._write() as conn:
            before = _rows.execution_from_row(await self._execution_row(conn, execution_id, lock=True))
            current = await self._settled(conn, before, now)
            try:
                after = decide(current, now)
            except GRPCError as error:
                refusal = error  # raised after the commit, which keeps a lease expiry
            else:
                await self._store_status(conn, current, after)
        if refusal is not None:
            raise refusal
        return after

    # -- RPCs ---------------------------------------------------------------------------------

    async def get_backend_info(self, message: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        return backend_info(self.kind, [pb.Capability.DURABLE_STORAGE, pb.Capability.SECRETS])

    @_storage_boundary
    async def create_execution(self, message: pb.CreateExecutionRequest) -> pb.CreateExecutionResponse:
        validation.validate_create_execution(message)
        now = _now()
        async with self._write(_CREATE_LOCK) as conn:
            row = await (
                await conn.execute(f"{_EXECUTION_SELECT} WHERE request_id = %s FOR UPDATE", (message.request_id,))
            ).fetchone()
            if row is not None:
                existing = await self._settled(conn, _rows.execution_from_row(row), now)
                executions.require_retry_of(existing, message)
                return pb.CreateExecutionResponse(execution=existing, created=False)
            assert message.agent_instance is not None  # validate_create_execution requires it
            agent = await self._agent_row(conn, message.agent_instance)
            maximum = await (await conn.execute("SELECT max(id) AS id FROM executions")).fetchone()
            assert maximum is not None  # an aggregate without GROUP BY has one row
            newest = maximum["id"]
            snapshot = pb.AgentInstance(id=agent["id"], name=agent["name"])
            execution = executions.new_execution(ids.next_id(ids.EXECUTION_PREFIX, newest), message, snapshot, now)
            await conn.execute(
                f"INSERT INTO executions ({', '.join(_rows.EXECUTION_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(_rows.EXECUTION_COLUMNS))})",
                _rows.execution_row(execution, agent["version"]),
            )
        return pb.CreateExecutionResponse(execution=execution, created=True)

    @_storage_boundary
    async def get_execution(self, message: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        validation.validate_execution_id(message.execution_id)
        return pb.GetExecutionResponse(execution=await self._read_execution(message.execution_id, _now()))

    @_storage_boundary
    async def list_executions(self, message: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        validation.validate_list_executions(message)
        size = paging.page_size(message.page_size)
        after = paging.decode_token(message)
        await self._expire_due_leases(_now())
        where: list[str] = []
        params: list[object] = []
        if message.agent_instance_id:
            where.append("agent_instance_id = %s")
            params.append(message.agent_instance_id)
        if message.phases:
            where.append("phase = ANY(%s)")
            params.append([int(phase) for phase in message.phases])
        if after is not None:
            where.append("id < %s" if message.newest_first else "id > %s")
            params.append(after)
        sql = _EXECUTION_SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'DESC' if message.newest_first else 'ASC'} LIMIT %s"
        async with self._conn() as conn:
            rows = await (await conn.execute(sql, (*params, size + 1))).fetchall()
        rows, token = paging.cut(message, rows, size, key=lambda row: row["id"])
        page = [_rows.execution_from_row(row) for row in rows]
        return pb.ListExecutionsResponse(executions=page, next_page_token=token)

    @_storage_boundary
    async def update_execution_status(
        self, message: pb.UpdateExecutionStatusRequest
    ) -> pb.UpdateExecutionStatusResponse:
        validation.validate_update_execution_status(message)
        updated = await self._change(
            message.execution_id, lambda current, now: executions.update_status(current, message, now)
        )
        return pb.UpdateExecutionStatusResponse(execution=updated)

    @_storage_boundary
    async def cancel_execution(self, message: pb.CancelExecutionRequest) -> pb.CancelExecutionResponse:
        validation.validate_cancel_execution(message)
        cancelled = await self._change(
            message.execution_id, lambda current, now: executions.cancel(current, message, now)
        )
        return pb.CancelExecutionResponse(execution=cancelled)

    async def watch_execution(self, message: pb.WatchExecutionRequest) -> AsyncIterator[pb.WatchExecutionResponse]:
        validation.validate_execution_id(message.execution_id)
        try:
            async with self._changes.subscription(message.execution_id, self._timeout) as changed:
                changed.clear()
                execution = await self._read_execution(message.execution_id, _now())
                while True:
                    yield pb.WatchExecutionResponse(execution=execution)
                    if executions.status_of(execution).phase in executions.TERMINAL_PHASES:
                        return
                    execution = await self._next_version(execution, changed)
        except GRPCError:
            raise
        except (psycopg.Error, PoolTimeout) as error:
            raise storage_error(error, self.where) from None
        except TimeoutError:
            raise GRPCError(Status.UNAVAILABLE, f"cannot listen for changes in {self.where}; try again") from None

    async def _next_version(self, seen: pb.Execution, changed: asyncio.Event) -> pb.Execution:
        """The version after ``seen``, waiting for a notification (or its lease to expire) if it is not there."""
        while True:
            changed.clear()
            async with self._conn() as conn:
                row = await (
                    await conn.execute(
                        f"SELECT version, update_time, {', '.join(STATUS_COLUMN_NAMES)} FROM execution_history "
                        "WHERE execution_id = %s AND version > %s ORDER BY version LIMIT 1",
                        (seen.id, seen.version),
                    )
                ).fetchone()
            if row is not None:
                if row["version"] != seen.version + 1:
                    raise GRPCError(
                        Status.ABORTED, f"the watch of execution {seen.id} fell too far behind; watch it again"
                    )
                return dataclasses.replace(
                    seen, status=_rows.status_from_row(row), version=row["version"], update_time=row["update_time"]
                )
            now = _now()
            if executions.lease_expired(seen, now):
                await self._read_execution(seen.id, now)  # writes the expiry; the history and a notification follow
                continue
            timeout = None  # no polling: a notification, or the lease's end, is what can change it
            lease = executions.status_of(seen).lease_expire_time
            if lease is not None:
                timeout = max(0.0, (lease - now).total_seconds()) + 0.001
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)

    @_storage_boundary
    async def get_execution_context(self, message: pb.GetExecutionContextRequest) -> pb.GetExecutionContextResponse:
        validation.validate_get_execution_context(message)
        execution = await self._read_execution(message.execution_id, _now())
        execution_context.check_holder(execution, message.runner_id)
        async with self._conn() as conn:
            row = await (
                await conn.execute(
                    "SELECT v.agent_instance FROM executions e JOIN agent_instance_versions v "
                    "ON v.agent_instance_id = e.agent_instance_id AND v.version = e.agent_version WHERE e.id = %s",
                    (execution.id,),
                )
            ).fetchone()
        assert row is not None  # the execution exists and its agent version is kept by a foreign key
        snapshot = _rows.agent_instance_from_json(row["agent_instance"])
        names = execution_context.referenced_secrets(snapshot.spec)
        values: dict[str, str] = {}
        if names:
            async with self._snapshot() as conn:  # the key check and the values agree
                values = await self._vault.values(conn, names)
        return execution_context.build(execution, snapshot, values)

    # -- agent instances ----------------------------------------------------------------------

    @staticmethod
    async def _agent_row(conn: Connection, ref: pb.AgentInstanceRef) -> Row:
        if ref.id is not None:
            row = await (await conn.execute(f"{_AGENT_SELECT} WHERE a.id = %s", (ref.id,))).fetchone()
            what = f"agent instance with id {ref.id!r}"
        else:
            row = await (await conn.execute(f"{_AGENT_SELECT} WHERE a.name = %s", (ref.name,))).fetchone()
            what = f"agent instance {ref.name!r}"
        if row is None:
            raise errors.not_found(what)
        return row

    @_storage_boundary
    async def get_agent_instance(self, message: pb.GetAgentInstanceRequest) -> pb.GetAgentInstanceResponse:
        ref = validation.validate_agent_instance_ref(message.agent_instance, "agent_instance")
        async with self._conn() as conn:
            row = await self._agent_row(conn, ref)
        return pb.GetAgentInstanceResponse(agent_instance=_rows.agent_instance_from_json(row["agent_instance"]))

    @_storage_boundary
    async def apply_agent_instance(self, message: pb.ApplyAgentInstanceRequest) -> pb.ApplyAgentInstanceResponse:
        validation.validate_apply_agent_instance(message)
        now = _now()
        async with self._write(_APPLY_LOCK) as conn:
            row = await (await conn.execute(f"{_AGENT_SELECT} WHERE a.name = %s", (message.name,))).fetchone()
            existing = None if row is None else _rows.agent_instance_from_json(row["agent_instance"])
            new_id = ""
            if existing is None:
                newest = await (
                    await conn.execute("SELECT max(agent_instance_id) AS id FROM agent_instance_versions")
                ).fetchone()
                assert newest is not None  # an aggregate without GROUP BY has one row
                new_id = ids.next_id(ids.AGENT_INSTANCE_PREFIX, newest["id"])
            agent, outcome = agent_instances.apply(existing, message, new_id, now)
            if outcome == pb.ApplyOutcome.CREATED:
                await conn.execute(
                    "INSERT INTO agent_instances (id, name, version) VALUES (%s, %s, %s)",
                    (agent.id, agent.name, agent.version),
                )
            elif outcome == pb.ApplyOutcome.UPDATED:
                await conn.execute("UPDATE agent_instances SET version = %s WHERE id = %s", (agent.version, agent.id))
            if outcome != pb.ApplyOutcome.UNCHANGED:
                await conn.execute(
                    "INSERT INTO agent_instance_versions (agent_instance_id, version, agent_instance) "
                    "VALUES (%s, %s, %s)",
                    (agent.id, agent.version, _rows.agent_instance_to_json(agent)),
                )
        return pb.ApplyAgentInstanceResponse(agent_instance=agent, outcome=outcome)

    @_storage_boundary
    async def list_agent_instances(self, message: pb.ListAgentInstancesRequest) -> pb.ListAgentInstancesResponse:
        size = paging.page_size(message.page_size)
        after = paging.decode_token(message)
        sql = _AGENT_SELECT
        params: list[str] = []
        if after is not None:
            sql += " WHERE a.name > %s"
            params.append(after)
        async with self._conn() as conn:
            rows = await (await conn.execute(f"{sql} ORDER BY a.name LIMIT %s", (*params, size + 1))).fetchall()
        rows, token = paging.cut(message, rows, size, key=lambda row: row["name"])
        page = [_rows.agent_instance_from_json(row["agent_instance"]) for row in rows]
        return pb.ListAgentInstancesResponse(agent_instances=page, next_page_token=token)

    @_storage_boundary
    async def delete_agent_instance(self, message: pb.DeleteAgentInstanceRequest) -> pb.DeleteAgentInstanceResponse:
        ref = validation.validate_agent_instance_ref(message.agent_instance, "agent_instance")
        async with self._write(_APPLY_LOCK) as conn:
            row = await self._agent_row(conn, ref)
            await conn.execute("DELETE FROM agent_instances WHERE id = %s", (row["id"],))
        return pb.DeleteAgentInstanceResponse()

    # -- secrets: sealed by SecretVault, only ciphertext is ever bound to SQL -------------------

    @_storage_boundary
    async def put_secret(self, message: pb.PutSecretRequest) -> pb.PutSecretResponse:
        validation.validate_put_secret(message)
        async with self._write(SECRETS_LOCK) as conn:
            return await self._vault.put(conn, message.name, message.value, _now())

    @_storage_boundary
    async def list_secrets(self, message: pb.ListSecretsRequest) -> pb.ListSecretsResponse:
        size = paging.page_size(message.page_size)
        async with self._conn() as conn:
            fetched = await self._vault.page(conn, paging.decode_token(message), size + 1)
        page, token = paging.cut(message, fetched, size, key=lambda secret: secret.name)
        return pb.ListSecretsResponse(secrets=page, next_page_token=token)

    @_storage_boundary
    async def delete_secret(self, message: pb.DeleteSecretRequest) -> pb.DeleteSecretResponse:
        validation.validate_secret_name(message.name)
        async with self._write(SECRETS_LOCK) as conn:
            await self._vault.delete(conn, message.name)
        return pb.DeleteSecretResponse()

    # -- the master key (MasterKeyAdmin) --------------------------------------------------------

    @_storage_boundary
    async def master_key_status(self) -> KeyStatus:
        """Where this replica finds the master key and whether it opens the stored secrets.

        Never creates a key, and reports problems in ``KeyStatus.problem``
        rather than raising them.
        """
        async with self._snapshot() as conn:
            return await self._vault.status(conn)

    @_storage_boundary
    async def rotate_master_key(self, new_key: MasterKey | None = None) -> KeyRotation:
        """Re-seals every secret under a new key in one transaction, then keeps the new key where the old one was.

        The new key is staged next to the current one before the transaction
        commits, so a crash at any point leaves either the old ciphertext and
        the old key, or the new ciphertext and a key that opens it. The other
        replicas refuse the secrets until they are given the new key.
        Raises ``GRPCError`` (see ``MasterKeyPolicy.rotate``).
        """
        async with self._write(SECRETS_LOCK) as conn:
            rotation = await self._vault.rotate(conn, new_key)
        self._vault.promote(rotation)
        return rotation
