"""The chat completions provider against the fake model: retries, their bounds, timeouts."""

from __future__ import annotations

import socket

import pytest

from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner.providers import CallBudget, ModelCallFailed, provider_for, timeout_of

from .conftest import WAIT


def spec(model: str, endpoint: str, **env: str) -> pb.AgentInstanceSpec:
    return pb.AgentInstanceSpec(
        model=pb.ModelConfig(provider="openai-compatible", model=model, endpoint=endpoint),
        env=[pb.EnvironmentVariable(name=name, value=value) for name, value in env.items()],
    )


async def call(spec: pb.AgentInstanceSpec, budget: CallBudget) -> tuple[pb.ExecutionOutput, list[str]]:
    pieces: list[str] = []
    output = await provider_for("openai-compatible").complete(
        spec, pb.ExecutionInput(message="hi"), {}, on_text=pieces.append, budget=budget
    )
    return output, pieces


async def test_streamed_pieces_arrive_separately_and_the_output_is_their_join(model):
    output, pieces = await call(spec("stream", model.endpoint), CallBudget(WAIT, WAIT))
    assert pieces == ["Hello", ", ", "world"] and output.text == "Hello, world"


async def test_a_503_without_retry_after_is_retried_after_a_backoff(model):
    retries: list[str] = []
    output = await provider_for("openai-compatible").complete(
        spec("unavailable", model.endpoint),
        pb.ExecutionInput(message="hi"),
        {},
        on_text=lambda text: None,
        budget=CallBudget(WAIT, WAIT),
        on_retry=retries.append,
    )
    assert output.text == "ok" and model.count("unavailable") == 2
    assert len(retries) == 1 and retries[0].startswith("the model answered HTTP 503; attempt 2 in "), retries
    assert retries[0].endswith(" s (backing off)")


async def test_a_retry_after_longer_than_the_time_left_fails_without_waiting(model):
    with pytest.raises(ModelCallFailed) as failed:
        await call(spec("flaky", model.endpoint), CallBudget(timeout=WAIT, max_wait=0.5))
    assert failed.value.code == "MODEL_HTTP_ERROR" and "429" in str(failed.value)
    assert model.count("flaky") == 1


async def test_an_unreachable_endpoint_is_retried_until_the_budget_ends():
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ModelCallFailed) as failed:
        await call(spec("m", f"http://127.0.0.1:{port}/v1"), CallBudget(timeout=2, max_wait=2))
    assert failed.value.code == "MODEL_UNREACHABLE"
    attempts = int(str(failed.value).rsplit("after ", 1)[1].split(" ")[0])
    assert attempts >= 2, "a connection error is retried"


async def test_the_agents_timeout_ends_a_call_that_streams_forever(model):
    slow = spec("slow", model.endpoint, STIGMER_MODEL_TIMEOUT="0.5")
    with pytest.raises(ModelCallFailed) as failed:
        await call(slow, CallBudget(timeout_of(slow), WAIT))
    assert failed.value.code == "MODEL_TIMEOUT"
    assert model.disconnected.wait(WAIT)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "100000"])
def test_a_bad_timeout_is_a_config_error(value):
    with pytest.raises(ModelCallFailed) as failed:
        timeout_of(spec("m", "http://x", STIGMER_MODEL_TIMEOUT=value))
    assert failed.value.code == "MODEL_CONFIG"
