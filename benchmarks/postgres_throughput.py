"""PostgreSQL backend throughput through one and two ``stigmer server`` replicas, next to raw psycopg.

    .venv/bin/python benchmarks/postgres_throughput.py            # ~1 min
    .venv/bin/python benchmarks/postgres_throughput.py --quick    # smaller, for a smoke run

Starts its own PostgreSQL server (initdb + pg_ctl on a Unix socket in a temporary
directory, as the tests do; needs PostgreSQL installed, see scripts/setup) and one
database. A *lifecycle* is one execution created and driven PENDING -> RUNNING ->
SUCCEEDED: CreateExecution, a claim with expected_version, SUCCEEDED with an output.
Prints lifecycles per second, the median of several rounds (with min and max), for:

- raw:   psycopg 3 async in this process, ``--clients`` connections, issuing the same SQL
         the backend issues, in the same transactions: for a create, the advisory lock, the
         request-id lookup, the agent lookup, ``max(id)`` and the INSERT; for each status
         write, ``SELECT ... FOR UPDATE`` and the compare-and-set UPDATE (trigger included);
- in-process:   ``PostgresBackend`` called directly by ``--clients`` tasks (what the adapter costs);
- one replica:  ``--clients`` concurrent gRPC clients (generated stub) on one ``stigmer server``;
- two replicas: the same clients split over two ``stigmer server`` processes on the database.

Every figure is measured in this one run, rounds interleaved. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the throwaway PostgreSQL server of the tests

import psycopg  # noqa: E402
from grpclib.client import Channel  # noqa: E402

from stigmer_backend.backends.postgres import PostgresBackend  # noqa: E402
from stigmer_backend.backends.rules import ids  # noqa: E402
from stigmer_backend.gen.stigmer.backend import v1 as pb  # noqa: E402
from stigmer_backend.server.launch import ServerProcess  # noqa: E402
from tests.postgres.cluster import Cluster  # noqa: E402

SPEC = pb.AgentInstanceSpec(instructions="be brief", model=pb.ModelConfig(provider="ollama", model="llama3"))
RUNNING, SUCCEEDED = pb.ExecutionPhase.RUNNING, pb.ExecutionPhase.SUCCEEDED
_STATUS = (
    "phase, message, output_text, output_data, error_code, error_message, error_details, runner_id, "
    "lease_expire_time, start_time, end_time"
)
_COLUMNS = "id, request_id, agent_instance_id, agent_instance_name, agent_version, input_message, input_data, " \
    f"version, create_time, update_time, {_STATUS}"  # fmt: skip
_SELECT = f"SELECT {_COLUMNS} FROM executions"
_AGENT = (
    "SELECT a.id, a.name, a.version, v.agent_instance FROM agent_instances a "
    "JOIN agent_instance_versions v ON v.agent_instance_id = a.id AND v.version = a.version WHERE a.name = %s"
)
_ASSIGN = ", ".join(f"{name.strip()} = %s" for name in _STATUS.split(","))


# -- through replicas --------------------------------------------------------------------------


async def stub_lifecycle(stub, request_id: str) -> None:
    created = await stub.create_execution(
        pb.CreateExecutionRequest(
            request_id=request_id,
            agent_instance=pb.AgentInstanceRef(name="bench"),
            input=pb.ExecutionInput(message=request_id),
        )
    )
    execution = created.execution
    claimed = await stub.update_execution_status(
        pb.UpdateExecutionStatusRequest(
            execution_id=execution.id, phase=RUNNING, runner_id="r1", expected_version=execution.version
        )
    )
    await stub.update_execution_status(
        pb.UpdateExecutionStatusRequest(
            execution_id=execution.id,
            phase=SUCCEEDED,
            runner_id="r1",
            expected_version=claimed.execution.version,
            output=pb.ExecutionOutput(text="done"),
        )
    )


async def replicas_round(stubs: list, tag: str, count: int, clients: int) -> float:
    numbers = iter(range(count))

    async def client(stub) -> None:  # a stub, or the backend itself: the same methods
        for n in numbers:
            await stub_lifecycle(stub, f"{tag}-{n}")

    started = time.perf_counter()
    await asyncio.gather(*(client(stubs[i % len(stubs)]) for i in range(clients)))
    return count / (time.perf_counter() - started)


# -- raw psycopg: the same statements --------------------------------------------------------


async def raw_lifecycle(conn: psycopg.AsyncConnection, request_id: str) -> None:
    now = datetime.now(UTC)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x5374_676D_0001,))
        await (await conn.execute(f"{_SELECT} WHERE request_id = %s FOR UPDATE", (request_id,))).fetchone()
        agent = await (await conn.execute(_AGENT, ("bench",))).fetchone()
        newest = (await (await conn.execute("SELECT max(id) FROM executions")).fetchone())[0]
        execution_id = ids.next_id(ids.EXECUTION_PREFIX, newest)
        await conn.execute(
            f"INSERT INTO executions ({_COLUMNS}) VALUES ({', '.join(['%s'] * 21)})",
            (execution_id, request_id, agent[0], agent[1], agent[2], request_id.encode(), None, 1, now, now,
             1, b"", None, None, None, None, None, "", None, None, None),
        )  # fmt: skip
    version = 1
    for phase, output, lease in ((2, None, now + timedelta(seconds=60)), (3, b"done", None)):
        async with conn.transaction():
            await (await conn.execute(f"{_SELECT} WHERE id = %s FOR UPDATE", (execution_id,))).fetchone()
            status = (phase, b"", output, None if output is None else "null", None, None, None, "r1", lease, now,
                      None if phase == 2 else now)  # fmt: skip
            await conn.execute(
                f"UPDATE executions SET version = %s, update_time = %s, {_ASSIGN} WHERE id = %s AND version = %s",
                (version + 1, datetime.now(UTC), *status, execution_id, version),
            )
        version += 1


async def raw_round(conns: list[psycopg.AsyncConnection], tag: str, count: int) -> float:
    numbers = iter(range(count))

    async def client(conn: psycopg.AsyncConnection) -> None:
        for n in numbers:
            await raw_lifecycle(conn, f"{tag}-{n}")

    started = time.perf_counter()
    await asyncio.gather(*(client(conn) for conn in conns))
    return count / (time.perf_counter() - started)


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):8,.0f}/s  (min {min(rates):,.0f}, max {max(rates):,.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    args = parser.parse_args()
    count, rounds = (150, 3) if args.quick else (600, 5)
    print(f"PostgreSQL throughput, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.clients} clients, {count} lifecycles per round, {rounds} rounds")  # fmt: skip
    with Cluster.start() as cluster, tempfile.TemporaryDirectory() as home:
        database = cluster.create_database("bench")
        async with PostgresBackend(database) as backend:  # creates the schema
            await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="bench", spec=SPEC))
        os.chmod(home, 0o700)
        env = {**os.environ, "STIGMER_HOME": home, "STIGMER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
        env.pop("STIGMER_SERVER_TOKEN", None)
        pool = str(args.clients)
        with (
            ServerProcess.start(["--backend", database, "--pool-size", pool], env=env) as first,
            ServerProcess.start(["--backend", database, "--pool-size", pool], env=env) as second,
        ):
            channels = [Channel(*server.endpoint.rsplit(":", 1)) for server in (first, second)]
            stubs = [pb.BackendServiceStub(channel, timeout=60) for channel in channels]
            conns = [await psycopg.AsyncConnection.connect(database, autocommit=True) for _ in range(args.clients)]
            for conn in conns:
                await conn.execute("SET TIME ZONE 'UTC'")
            names = ("raw psycopg", "in-process", "one replica", "two replicas")
            results: dict[str, list[float]] = {name: [] for name in names}
            in_process = await PostgresBackend(database, pool_size=args.clients).open()
            tags = itertools.count()
            await raw_round(conns, "warm-raw", 30)
            await replicas_round(stubs, "warm-replicas", 30, args.clients)
            for _ in range(rounds):
                results["raw psycopg"].append(await raw_round(conns, f"raw{next(tags)}", count))
                results["in-process"].append(await replicas_round([in_process], f"in{next(tags)}", count, args.clients))
                results["one replica"].append(await replicas_round(stubs[:1], f"one{next(tags)}", count, args.clients))
                results["two replicas"].append(await replicas_round(stubs, f"two{next(tags)}", count, args.clients))
            await in_process.aclose()
            for conn in conns:
                await conn.close()
            for channel in channels:
                channel.close()
    raw = statistics.median(results["raw psycopg"])
    print("\nlifecycles/s (CreateExecution + claim + SUCCEEDED), median of rounds; ratio to raw psycopg")
    for name, rates in results.items():
        print(f"  {name:<13} {summary(rates)}   {statistics.median(rates) / raw:5.2f} x raw")


if __name__ == "__main__":
    asyncio.run(main())
