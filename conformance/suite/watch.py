"""`WatchExecution`: current state first, then every version, no gap, ending at a terminal phase."""

from __future__ import annotations

from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status
from stigmer_backend.conformance.scenarios import claim, create_execution, execution_in, move, status
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase


def _consecutive(states: list[pb.Execution]) -> bool:
    return [s.version for s in states] == list(range(states[0].version, states[0].version + len(states)))


class TestWatchExecution:
    def test_sends_the_current_state_first(self, client: Client) -> None:
        """The first message is the execution as it is when the watch starts."""
        running = claim(client, create_execution(client))
        watch = client.watch(running.id)
        assert watch.wait_until(lambda w: len(w.states) >= 1)
        assert watch.states[0] == running
        watch.cancel()

    def test_delivers_every_version_in_order_and_ends_at_terminal(self, client: Client) -> None:
        """Every later write is delivered once, versions consecutive; the stream ends after the terminal state."""
        execution = create_execution(client)
        watch = client.watch(execution.id)
        assert watch.wait_until(lambda w: len(w.states) >= 1)
        running = claim(client, execution)
        for step in range(5):
            running = move(client, running, Phase.RUNNING, message=f"step {step}")
        done = move(client, running, Phase.SUCCEEDED, message="done")
        states = watch.finish()
        assert states[0] == execution
        assert states[-1] == done
        assert _consecutive(states) and len(states) == done.version
        assert [status(s).message for s in states[2:-1]] == [f"step {i}" for i in range(5)]

    def test_writes_in_quick_succession_are_not_coalesced(self, client: Client) -> None:
        """Writes issued back to back, without waiting for the watcher, are each delivered."""
        execution = create_execution(client)
        watch = client.watch(execution.id)
        assert watch.wait_until(lambda w: len(w.states) >= 1)
        running = claim(client, execution)
        requests = [
            ("update_execution_status", pb.UpdateExecutionStatusRequest(execution_id=execution.id, phase=Phase.RUNNING, runner_id=status(running).runner_id, message=str(i)))
            for i in range(10)
        ]  # fmt: skip
        for call in requests:
            client.concurrently([call])
        client.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id))
        states = watch.finish()
        assert _consecutive(states) and status(states[-1]).phase == Phase.CANCELLED
        assert len(states) == 13

    def test_a_terminal_execution_sends_one_message(self, client: Client) -> None:
        """Already terminal: the first message is the only one."""
        done = execution_in(client, Phase.FAILED)
        assert client.watch(done.id).finish() == [done]

    def test_a_cancellation_ends_the_stream(self, client: Client) -> None:
        """`CancelExecution` is delivered and ends the stream."""
        execution = create_execution(client)
        watch = client.watch(execution.id)
        assert watch.wait_until(lambda w: len(w.states) >= 1)
        client.cancel_execution(pb.CancelExecutionRequest(execution_id=execution.id, reason="stop"))
        states = watch.finish()
        assert [status(s).phase for s in states] == [Phase.PENDING, Phase.CANCELLED]

    def test_unknown_execution_is_not_found(self, client: Client) -> None:
        """No such execution: NOT_FOUND before any message."""
        watch = client.watch("exe_not_there_at_all")
        assert watch.wait_until(lambda w: w.done)
        assert watch.states == []
        with expect_status(Status.NOT_FOUND):
            watch.reraise("WatchExecution fails with NOT_FOUND if the execution does not exist")

    def test_empty_id_is_invalid_argument(self, client: Client) -> None:
        """Empty `execution_id`: INVALID_ARGUMENT."""
        watch = client.watch("")
        assert watch.wait_until(lambda w: w.done)
        with expect_status(Status.INVALID_ARGUMENT, naming="execution_id"):
            watch.reraise("WatchExecution fails with INVALID_ARGUMENT if execution_id is empty")
