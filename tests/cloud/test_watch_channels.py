"""Open watches never hold up unary calls, nor each other, on one ``CloudBackend``.

An HTTP/2 connection carries at most 100 streams at once on ``stigmer server`` (grpclib's
default); with watches on the unary connection, 100 open watches made ``GetExecution`` wait for
one of them to end. Here 150 watches are all open at once (each has delivered its first message,
impossible within one connection's limit) while a unary call completes.
"""

from __future__ import annotations

import asyncio

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.cloud.watch_channels import STREAMS_PER_CHANNEL
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import SPEC

WATCHES = 150


async def test_a_unary_call_completes_while_150_watches_are_open(served, token):
    async with CloudBackend(served.endpoint, token=token, timeout=30) as backend:
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=SPEC))
        ids = []
        for i in range(WATCHES):
            created = await backend.create_execution(
                pb.CreateExecutionRequest(
                    request_id=f"r-{i}",
                    agent_instance=pb.AgentInstanceRef(name="helper"),
                    input=pb.ExecutionInput(message="x"),
                )
            )
            ids.append(created.execution.id)
        opened = [asyncio.Event() for _ in ids]

        async def watch(execution_id: str, first: asyncio.Event) -> None:
            async for _ in backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id)):
                first.set()

        watches = [
            asyncio.create_task(watch(execution_id, first)) for execution_id, first in zip(ids, opened, strict=True)
        ]
        try:
            # A bound, not a pause: on a single connection the 101st watch would never open.
            await asyncio.wait_for(asyncio.gather(*(first.wait() for first in opened)), 60)
            got = await backend.get_execution(pb.GetExecutionRequest(execution_id=ids[0]))
            assert got.execution.id == ids[0]
            assert backend._watch_channels.channels == -(-WATCHES // STREAMS_PER_CHANNEL)
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
        assert backend._watch_channels.channels == 1  # emptied connections closed, one kept for the next watch
