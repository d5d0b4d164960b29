"""A randomized stateful test: the backend and a small reference model, driven side by side.

Hypothesis picks operations on a handful of executions (claims with and
without the right version, renewals, reports, cancellations, reads by any
runner); after each step the backend's answer — success with the new phase
and version, or the status code — must be what the reference model, written
from the proto's text, predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from grpclib import GRPCError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from stigmer_backend.conformance.client import Client, request_id
from stigmer_backend.conformance.scenarios import apply_agent, execution_of, status
from stigmer_backend.conformance.tables import LEGAL_TRANSITIONS, TERMINAL
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
RUNNERS = ["cf-r1", "cf-r2", "cf-r3"]
T = TypeVar("T")


class Model:
    """What the proto says one execution is: phase, version, lease holder."""

    def __init__(self) -> None:
        self.phase, self.version, self.holder = Phase.PENDING, 1, ""

    def update(self, to: pb.ExecutionPhase, runner: str, expected: int) -> str | None:
        """The status code name the update must fail with, or None if it succeeds (then applied)."""
        if expected and expected != self.version:
            return "ABORTED"
        if (self.phase, to) not in LEGAL_TRANSITIONS:
            return "FAILED_PRECONDITION"
        if self.phase == Phase.RUNNING and runner != self.holder:
            return "FAILED_PRECONDITION"
        if to == Phase.RUNNING:
            self.holder = runner
        self.phase, self.version = to, self.version + 1
        return None

    def cancel(self, expected: int) -> str | None:
        if expected and expected != self.version:
            return "ABORTED"
        if self.phase in TERMINAL:
            return "FAILED_PRECONDITION"
        self.phase, self.version = Phase.CANCELLED, self.version + 1
        return None

    def context(self, runner: str) -> str | None:
        return None if self.phase == Phase.RUNNING and runner == self.holder else "FAILED_PRECONDITION"


def _outcome(call: Callable[[], T]) -> tuple[str | None, T | None]:
    try:
        return None, call()
    except GRPCError as error:
        return error.status.name, None


def test_backend_matches_the_reference_model(client: Client) -> None:
    """Random sequences of updates, cancels and context reads agree with the proto's state machine."""

    class ExecutionMachine(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.agent = apply_agent(client)
            self.ids: list[str] = []
            self.models: dict[str, Model] = {}

        @rule()
        def create(self) -> None:
            if len(self.ids) >= 4:
                return
            request = pb.CreateExecutionRequest(
                request_id=request_id(),
                agent_instance=pb.AgentInstanceRef(id=self.agent.id),
                input=pb.ExecutionInput(message="stateful"),
            )
            execution = execution_of(client.create_execution(request))
            self.ids.append(execution.id)
            self.models[execution.id] = Model()

        @rule(
            index=st.integers(0, 3),
            to=st.sampled_from([Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED]),
            runner=st.sampled_from(RUNNERS),
            version_choice=st.sampled_from(["none", "right", "wrong"]),
        )
        def update(self, index: int, to: pb.ExecutionPhase, runner: str, version_choice: str) -> None:
            if not self.ids:
                return
            execution_id = self.ids[index % len(self.ids)]
            model = self.models[execution_id]
            expected = {"none": 0, "right": model.version, "wrong": model.version + 3}[version_choice]
            error = pb.ExecutionError(code="X") if to == Phase.FAILED else None
            request = pb.UpdateExecutionStatusRequest(
                execution_id=execution_id, phase=to, runner_id=runner, expected_version=expected, error=error
            )
            code, response = _outcome(lambda: client.update_execution_status(request))
            assert code == model.update(to, runner, expected), (execution_id, to, runner, expected)
            if response is not None:
                execution = execution_of(response)
                assert (status(execution).phase, execution.version) == (model.phase, model.version)

        @rule(index=st.integers(0, 3), right_version=st.booleans())
        def cancel(self, index: int, right_version: bool) -> None:
            if not self.ids:
                return
            execution_id = self.ids[index % len(self.ids)]
            model = self.models[execution_id]
            expected = model.version if right_version else 0
            request = pb.CancelExecutionRequest(execution_id=execution_id, expected_version=expected)
            code, _ = _outcome(lambda: client.cancel_execution(request))
            assert code == model.cancel(expected)

        @rule(index=st.integers(0, 3), runner=st.sampled_from(RUNNERS))
        def read_context(self, index: int, runner: str) -> None:
            if not self.ids:
                return
            execution_id = self.ids[index % len(self.ids)]
            request = pb.GetExecutionContextRequest(execution_id=execution_id, runner_id=runner)
            code, _ = _outcome(lambda: client.get_execution_context(request))
            assert code == self.models[execution_id].context(runner)

        @invariant()
        def backend_agrees(self) -> None:
            for execution_id in getattr(self, "ids", []):
                stored = execution_of(client.get_execution(pb.GetExecutionRequest(execution_id=execution_id)))
                model = self.models[execution_id]
                assert (status(stored).phase, stored.version) == (model.phase, model.version)

    ExecutionMachine.TestCase.settings = settings(
        max_examples=15,
        stateful_step_count=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    ExecutionMachine.TestCase().runTest()


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
