"""Two ``stigmer server`` replicas on one PostgreSQL database: exact claims, watches across
replicas, and a replica killed under load.

Clients are the generated stubs over real gRPC channels (no retries), each
bound to one replica, as runners behind a load balancer would be.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import timedelta

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC

PENDING, RUNNING, SUCCEEDED = pb.ExecutionPhase.PENDING, pb.ExecutionPhase.RUNNING, pb.ExecutionPhase.SUCCEEDED
LOST_RACE = {Status.ABORTED, Status.FAILED_PRECONDITION}  # another runner's write came first


class Replica:
    """A channel to one replica and its generated stub."""

    def __init__(self, endpoint: str) -> None:
        host, _, port = endpoint.rpartition(":")
        self.channel = Channel(host, int(port))
        self.stub = pb.BackendServiceStub(self.channel, timeout=60)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
async def connect():
    opened: list[Replica] = []

    def open_replica(server) -> Replica:
        opened.append(Replica(server.endpoint))
        return opened[-1]

    yield open_replica
    for replica in opened:
        replica.close()


async def create(stub, request_id: str) -> pb.Execution:
    response = await stub.create_execution(
        pb.CreateExecutionRequest(
            request_id=request_id,
            agent_instance=pb.AgentInstanceRef(name="worker"),
            input=pb.ExecutionInput(message=request_id),
        )
    )
    return response.execution


async def claim_and_finish(stub, runner_id: str, execution: pb.Execution, updates: list) -> bool:
    """Claims ``execution`` (compare-and-set on its version) and finishes it; False if another runner won."""
    try:
        claimed = await stub.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id,
                phase=RUNNING,
                runner_id=runner_id,
                expected_version=execution.version,
                lease_duration=timedelta(seconds=120),
            )
        )
    except GRPCError as error:
        if error.status in LOST_RACE:
            return False
        raise
    updates.append((execution.id, claimed.execution.version))
    done = await stub.update_execution_status(
        pb.UpdateExecutionStatusRequest(
            execution_id=execution.id,
            phase=SUCCEEDED,
            runner_id=runner_id,
            expected_version=claimed.execution.version,
            output=pb.ExecutionOutput(text=f"done by {runner_id}"),
        )
    )
    updates.append((execution.id, done.execution.version))
    return True


async def test_500_executions_are_each_claimed_exactly_once_across_two_replicas(start_replica, connect):
    replicas = [connect(start_replica()), connect(start_replica())]
    await replicas[0].stub.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="worker", spec=SPEC))
    for start in range(0, 500, 50):  # created through both replicas, in concurrent batches
        await asyncio.gather(*(create(replicas[i % 2].stub, f"job-{i:03}") for i in range(start, start + 50)))

    claims: dict[str, list[str]] = {}
    updates: list[tuple[str, int]] = []
    lost_races = 0

    async def runner(replica: Replica, runner_id: str) -> None:
        nonlocal lost_races
        while True:
            page = await replica.stub.list_executions(pb.ListExecutionsRequest(phases=[PENDING], page_size=25))
            if not page.executions:
                return
            # Every runner sees the same page and races for it: the database must pick one winner each.
            for execution in page.executions:
                if await claim_and_finish(replica.stub, runner_id, execution, updates):
                    claims.setdefault(execution.id, []).append(runner_id)
                else:
                    lost_races += 1

    runners = [runner(replicas[i % 2], f"runner-{i}") for i in range(8)]
    await asyncio.gather(*runners)

    assert len(claims) == 500 and all(len(winners) == 1 for winners in claims.values())
    assert {runner_id[-1] for winners in claims.values() for runner_id in winners} > {"0", "1"}, "both replicas won"
    stored: dict[str, pb.Execution] = {}
    request = pb.ListExecutionsRequest(page_size=100)
    while True:
        page = await replicas[1].stub.list_executions(request)
        stored.update((execution.id, execution) for execution in page.executions)
        if not page.next_page_token:
            break
        request = pb.ListExecutionsRequest(page_size=100, page_token=page.next_page_token)
    assert len(stored) == 500
    for execution_id, (winner,) in claims.items():
        execution = stored[execution_id]
        assert execution.status.phase == SUCCEEDED and execution.status.runner_id == winner
        assert execution.status.output.text == f"done by {winner}"
    # No lost update: each acknowledged write added exactly one version, and nothing else did.
    assert sum(execution.version - 1 for execution in stored.values()) == len(updates) == 1000
    assert len(set(updates)) == len(updates)
    through = [sum(int(winner[-1]) % 2 == i for (winner,) in claims.values()) for i in (0, 1)]
    print(
        f"\nclaims: {len(claims)} executions, each claimed once (A {through[0]}, B {through[1]}); "
        f"{lost_races} claims lost the race; {len(updates)} acknowledged writes = "
        f"{sum(e.version - 1 for e in stored.values())} versions stored: 0 lost updates"
    )


async def test_a_watcher_on_one_replica_sees_every_version_written_through_the_other_in_order(start_replica, connect):
    watched_through, written_through = connect(start_replica()), connect(start_replica())
    writer = written_through.stub
    await writer.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="worker", spec=SPEC))
    execution = await create(writer, "watched")
    received: dict[int, float] = {}
    seen: list[int] = []
    arrived = asyncio.Condition()

    async def watch() -> None:
        request = pb.WatchExecutionRequest(execution_id=execution.id)
        async for response in watched_through.stub.watch_execution(request):
            async with arrived:
                seen.append(response.execution.version)
                received[response.execution.version] = time.perf_counter()
                arrived.notify_all()

    watcher = asyncio.create_task(watch())
    async with arrived:
        await asyncio.wait_for(arrived.wait_for(lambda: seen), 30)

    sent: dict[int, float] = {}
    version = execution.version

    async def write(phase=RUNNING, message: str = "") -> None:
        nonlocal version
        started = time.perf_counter()
        response = await writer.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution.id, phase=phase, runner_id="r1", expected_version=version, message=message
            )
        )
        version = response.execution.version
        sent[version] = started

    # One at a time, each awaited at the watcher: the latency of a single change, replica to replica.
    for step in range(100):
        await write(message=f"step {step}")
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(lambda: version in received), 30)
    # Then a burst, not awaited: the watcher must still see every version, in order.
    for step in range(100):
        await write(message=f"burst {step}")
    await write(SUCCEEDED)
    await asyncio.wait_for(watcher, 60)

    assert seen == list(range(1, version + 1)), "every version, in order, none twice"
    latencies = sorted((received[v] - sent[v]) * 1000 for v in range(2, 102))
    p50, p90 = statistics.median(latencies), latencies[int(len(latencies) * 0.9)]
    print(
        f"\nwatch latency, write through replica B -> watcher on replica A ({len(latencies)} writes): "
        f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, max {latencies[-1]:.1f} ms; {len(seen)} versions seen in order"
    )
    assert p50 < 1000, "a notification, not a poll, delivers changes (normally a few ms)"


async def test_a_replica_killed_under_load_loses_no_acknowledged_write_and_the_other_keeps_serving(
    start_replica, connect
):
    servers = [start_replica(), start_replica()]
    replicas = [connect(server) for server in servers]
    await replicas[1].stub.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="worker", spec=SPEC))
    acknowledged: dict[str, tuple[int, int]] = {}  # execution id -> (version, phase) last acknowledged
    after_kill: dict[tuple[int, int], int] = {}  # (replica, worker) -> lifecycles completed after the kill
    killed = asyncio.Event()
    enough_before_kill = asyncio.Event()
    failures: list[str] = []
    cut_off: list[int] = []  # the killed replica's clients, stopped by an error after the kill

    async def client(index: int, worker: int) -> None:
        stub = replicas[index].stub
        for n in range(10_000):
            try:
                execution = await create(stub, f"load-{index}-{worker}-{n}")
                acknowledged[execution.id] = (execution.version, int(execution.status.phase))
                updates: list[tuple[str, int]] = []
                await claim_and_finish(stub, f"runner-{index}-{worker}", execution, updates)
                acknowledged[execution.id] = (updates[-1][1], int(SUCCEEDED))
            except Exception as error:  # whatever a dead connection raises; recorded unless it is the killed replica
                if index == 0 and killed.is_set():
                    cut_off.append(worker)
                    return  # the killed replica's clients stop; the load balancer would send them elsewhere
                failures.append(f"replica {index}: {error!r}")
                return
            if len(acknowledged) >= 60:
                enough_before_kill.set()
            if killed.is_set():
                after_kill[index, worker] = after_kill.get((index, worker), 0) + 1
                if index == 1 and after_kill[index, worker] >= 30:
                    return

    clients = [asyncio.create_task(client(index, worker)) for index in (0, 1) for worker in range(3)]
    await asyncio.wait_for(enough_before_kill.wait(), 60)
    servers[0].kill()  # SIGKILL mid-load: transactions in flight die with it
    killed.set()
    await asyncio.wait_for(asyncio.gather(*clients), 120)

    assert not failures, failures
    assert [after_kill.get((1, worker)) for worker in range(3)] == [30, 30, 30], "the survivor served all"
    ahead = found = 0
    for execution_id, (version, phase) in acknowledged.items():
        stored = (await replicas[1].stub.get_execution(pb.GetExecutionRequest(execution_id=execution_id))).execution
        # A write in flight at the kill may have committed unacknowledged; none acknowledged may be missing.
        assert stored.version >= version, execution_id
        if stored.version == version:
            assert int(stored.status.phase) == phase, execution_id
        ahead += stored.version > version
        found += min(stored.version, version)
    # What the killed replica's clients left unfinished (acknowledged or not) holds no lock: the survivor ends it.
    unfinished = pb.ListExecutionsRequest(phases=[PENDING, RUNNING], page_size=100)
    left = (await replicas[1].stub.list_executions(unfinished)).executions
    for execution in left:
        request = pb.CancelExecutionRequest(execution_id=execution.id, reason="its replica died")
        cancelled = (await replicas[1].stub.cancel_execution(request)).execution
        assert cancelled.status.phase == pb.ExecutionPhase.CANCELLED, execution.id
    assert (await replicas[1].stub.list_executions(unfinished)).executions == []
    print(
        f"\nkill -9: {sum(v for v, _ in acknowledged.values())} writes acknowledged, {found} found, on "
        f"{len(acknowledged)} executions ({ahead} also hold a write committed but never acknowledged); "
        f"{len(cut_off)} of the killed replica's 3 clients stopped on an error, leaving {len(left)} executions "
        f"unfinished (each then cancelled through the survivor); "
        f"the survivor completed {sum(after_kill.get((1, w), 0) for w in range(3))} lifecycles after the kill"
    )
