"""The suite's view of a backend: synchronous calls, tracked resources, one error helper.

Tests call ``client.create_execution(request)`` exactly as they would call the
generated stub or a Python backend, but synchronously, on the suite's event
loop, each bounded by a timeout so a hung backend fails a test instead of
hanging the run. Everything a test creates is registered and undone at
teardown (csi-test's ``Resources``), and names carry a per-run suffix, so the
suite can run against a shared, long-lived backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets as _random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import betterproto2
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = [
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
]

CALL_TIMEOUT = 30.0
_RUN = _random.token_hex(3)
_counter = iter(range(1, 1 << 62))
T = TypeVar("T")

BackendUnderTest = pb.BackendServiceBase | pb.BackendServiceStub
"""What the suite calls: a Python backend (the generated base) or the generated stub of a remote one."""


def unique_name(prefix: str = "cf") -> str:
    """An agent instance name no other test or run uses (valid for the name pattern)."""
    return f"{prefix}-{_RUN}-{next(_counter)}"


def unique_secret_name(prefix: str = "CF") -> str:
    return f"{prefix}_{_RUN.upper()}_{next(_counter)}"


def request_id() -> str:
    return f"cf-{uuid.uuid4()}"


_known_secret_values: set[str] = set()


def remember_secret_value(value: str) -> None:
    """Registers a value that must never appear in an error message or ordinary response."""
    _known_secret_values.add(value)


def leaked_values(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [v for v in _known_secret_values if v.encode() in text]
    return [v for v in _known_secret_values if v in text]


def present(value: T | None, field: str, clause: str) -> T:
    """``value``, or a failure saying the backend left ``field`` unset although ``clause`` requires it."""
    assert value is not None, f"the backend left {field} unset; the contract says: {clause}"
    return value


class _Caught:
    error: GRPCError


@contextlib.contextmanager
def expect_status(status: Status, *, naming: str | None = None) -> Iterator[_Caught]:
    """Asserts the block fails with ``status``; the message names ``naming`` if given.

    Every expected failure is also checked for leaked secret values.
    """
    caught = _Caught()
    try:
        yield caught
    except GRPCError as error:
        caught.error = error
        message = error.message or ""
        assert error.status == status, f"expected {status.name}, got {error.status.name}: {message}"
        assert not leaked_values(message), "a secret value appears in an error message"
        if naming is not None:
            assert naming in message, f"the {status.name} message should name {naming!r}: {message!r}"
    else:
        raise AssertionError(f"expected the call to fail with {status.name}, but it succeeded")


_WATCHED = "each message carries the execution's state"


def _created(resource: T | None, response: str) -> T:
    return present(resource, f"{response} of a created resource", "the response carries what was created")


class Watch:
    """A ``WatchExecution`` stream consumed in the background while the test goes on."""

    def __init__(self, client: Client, execution_id: str) -> None:
        self._client = client
        self.states: list[pb.Execution] = []
        self.error: BaseException | None = None
        self.done = False
        self._task = client.loop.create_task(self._consume(execution_id))

    async def _consume(self, execution_id: str) -> None:
        try:
            stream = self._client.backend.watch_execution(pb.WatchExecutionRequest(execution_id=execution_id))
            async for response in stream:
                self.states.append(present(response.execution, "WatchExecutionResponse.execution", _WATCHED))
        except Exception as error:  # reported to the test through .error
            self.error = error
        finally:
            self.done = True

    def wait_until(self, condition: Callable[[Watch], bool], timeout: float = 10.0) -> bool:
        """Runs the loop until ``condition(self)`` holds, or ``timeout`` passes."""

        async def poll() -> bool:
            deadline = asyncio.get_running_loop().time() + timeout
            while not condition(self):
                if asyncio.get_running_loop().time() > deadline:
                    return False
                await asyncio.sleep(0.005)
            return True

        return self._client.loop.run_until_complete(poll())

    def finish(self, timeout: float = 10.0) -> list[pb.Execution]:
        """Waits for the stream to end by itself and returns every state received."""
        assert self.wait_until(lambda w: w.done, timeout), (
            "the watch did not end; the contract says: the stream ends normally right after sending a terminal state"
        )
        if isinstance(self.error, GRPCError):
            raise AssertionError(
                f"the watch failed with {self.error.status.name}: {self.error.message}; the contract says: "
                "the stream ends normally right after sending a terminal state"
            ) from self.error
        if self.error is not None:
            raise self.error
        assert self.states, "the watch ended without a message; the contract says: first its current state"
        return self.states

    def reraise(self, clause: str) -> None:
        """Raises the error the stream ended with (for ``expect_status``); fails naming ``clause`` if there was none."""
        assert self.done, f"the watch has not ended; the contract says: {clause}"
        if self.error is None:
            raise AssertionError(
                f"the watch ended normally after {len(self.states)} message(s) instead of failing; "
                f"the contract says: {clause}"
            )
        raise self.error

    def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            self._client.loop.run_until_complete(self._task)


class Client:
    """Synchronous, tracked access to a backend (a Python ``Backend`` or a generated stub).

    One method per unary RPC, named and typed as the generated ones; ``watch`` stands for
    ``WatchExecution``.
    """

    def __init__(self, backend: BackendUnderTest, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self._undo: list[tuple[str, str]] = []

    def run(self, awaitable: Awaitable[T], timeout: float = CALL_TIMEOUT) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, timeout))

    def _call(self, request: betterproto2.Message, awaitable: Awaitable[T]) -> T:
        response = self.run(awaitable)
        self._track(request, response)
        return response

    # -- the RPCs -----------------------------------------------------------------------------

    def get_backend_info(self, request: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        return self._call(request, self.backend.get_backend_info(request))

    def create_execution(self, request: pb.CreateExecutionRequest) -> pb.CreateExecutionResponse:
        return self._call(request, self.backend.create_execution(request))

    def get_execution(self, request: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        return self._call(request, self.backend.get_execution(request))

    def list_executions(self, request: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        return self._call(request, self.backend.list_executions(request))

    def update_execution_status(self, request: pb.UpdateExecutionStatusRequest) -> pb.UpdateExecutionStatusResponse:
        return self._call(request, self.backend.update_execution_status(request))

    def cancel_execution(self, request: pb.CancelExecutionRequest) -> pb.CancelExecutionResponse:
        return self._call(request, self.backend.cancel_execution(request))

    def get_execution_context(self, request: pb.GetExecutionContextRequest) -> pb.GetExecutionContextResponse:
        return self._call(request, self.backend.get_execution_context(request))

    def get_agent_instance(self, request: pb.GetAgentInstanceRequest) -> pb.GetAgentInstanceResponse:
        return self._call(request, self.backend.get_agent_instance(request))

    def apply_agent_instance(self, request: pb.ApplyAgentInstanceRequest) -> pb.ApplyAgentInstanceResponse:
        return self._call(request, self.backend.apply_agent_instance(request))

    def list_agent_instances(self, request: pb.ListAgentInstancesRequest) -> pb.ListAgentInstancesResponse:
        return self._call(request, self.backend.list_agent_instances(request))

    def delete_agent_instance(self, request: pb.DeleteAgentInstanceRequest) -> pb.DeleteAgentInstanceResponse:
        return self._call(request, self.backend.delete_agent_instance(request))

    def put_secret(self, request: pb.PutSecretRequest) -> pb.PutSecretResponse:
        return self._call(request, self.backend.put_secret(request))

    def list_secrets(self, request: pb.ListSecretsRequest) -> pb.ListSecretsResponse:
        return self._call(request, self.backend.list_secrets(request))

    def delete_secret(self, request: pb.DeleteSecretRequest) -> pb.DeleteSecretResponse:
        return self._call(request, self.backend.delete_secret(request))

    def concurrently(self, calls: Sequence[tuple[str, betterproto2.Message]]) -> list[betterproto2.Message | GRPCError]:
        """Issues every ``(rpc, request)`` at once; each result is a response or the ``GRPCError``."""

        async def all_at_once() -> list[betterproto2.Message | BaseException]:
            pending: list[Awaitable[betterproto2.Message]] = [getattr(self.backend, rpc)(r) for rpc, r in calls]
            return await asyncio.gather(*pending, return_exceptions=True)

        results: list[betterproto2.Message | GRPCError] = []
        for (_, request), result in zip(calls, self.run(all_at_once()), strict=True):
            if isinstance(result, BaseException) and not isinstance(result, GRPCError):
                raise result
            if not isinstance(result, BaseException):
                self._track(request, result)
            results.append(result)
        return results

    def watch(self, execution_id: str) -> Watch:
        return Watch(self, execution_id)

    # -- tracking and cleanup -----------------------------------------------------------------

    def _track(self, request: betterproto2.Message, response: object) -> None:
        if isinstance(response, pb.ApplyAgentInstanceResponse) and response.outcome == pb.ApplyOutcome.CREATED:
            self._undo.append(("agent", _created(response.agent_instance, "ApplyAgentInstanceResponse").id))
        elif isinstance(response, pb.CreateExecutionResponse) and response.created:
            self._undo.append(("execution", _created(response.execution, "CreateExecutionResponse").id))
        elif (
            isinstance(request, pb.PutSecretRequest) and isinstance(response, pb.PutSecretResponse) and response.created
        ):
            self._undo.append(("secret", request.name))

    def cleanup(self) -> None:
        """Undoes what was created, newest first; ignores NOT_FOUND; fails once with every error."""
        problems: list[str] = []
        while self._undo:
            kind, key = self._undo.pop()
            try:
                if kind == "agent":
                    ref = pb.AgentInstanceRef(id=key)
                    self.run(self.backend.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=ref)))
                elif kind == "secret":
                    self.run(self.backend.delete_secret(pb.DeleteSecretRequest(name=key)))
                else:
                    request = pb.CancelExecutionRequest(execution_id=key, reason="conformance cleanup")
                    self.run(self.backend.cancel_execution(request))
            except GRPCError as error:
                if error.status not in (Status.NOT_FOUND, Status.FAILED_PRECONDITION):
                    problems.append(f"{kind} {key}: {error.status.name} {error.message}")
            except Exception as error:
                problems.append(f"{kind} {key}: {type(error).__name__}: {error}")
        assert not problems, "cleanup failed: " + "; ".join(problems)
