"""Model providers: how a runner turns an agent's model section into one call.

``echo`` answers with the input, offline: it exercises the whole execution
plane (claim, lease, context, masking, report) with nothing installed.
``openai``, ``ollama`` and ``openai-compatible`` speak the OpenAI chat
completions API, which Ollama, vLLM, LM Studio and most gateways also serve.
Credentials are resolved from the context at the moment the request is
built, and live only in that request's headers.

The HTTP client is httpx, not the official ``openai`` SDK: the SDK pulls in
pydantic, distro, jiter and more for what is one POST and a line-by-line SSE
read here; httpx is what the SDK itself is built on, is async, streams, and
closes the connection the moment its task is cancelled (so a cancelled
execution stops costing tokens at once).

A call streams (``"stream": true``) and hands each piece of text to
``on_text`` as it arrives; a server that answers with plain JSON instead is
read whole. It is retried, with exponential backoff or the server's
``Retry-After``, on 429, 5xx and connection errors, while nothing has been
streamed yet and the wait fits in the time left (the agent's timeout) and in
one lease. Anything else (401, 400, a bad body) fails at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from stigmer_backend.gen.stigmer.backend import v1 as pb

from .resolver import resolve

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "SUPPORTED_PROVIDERS",
    "TIMEOUT_VARIABLE",
    "CallBudget",
    "ModelCallFailed",
    "Provider",
    "provider_for",
    "timeout_of",
]

DEFAULT_ENDPOINTS = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://localhost:11434/v1",
}
DEFAULT_TIMEOUT = 300.0
TIMEOUT_VARIABLE = "STIGMER_MODEL_TIMEOUT"
"""An agent's ``spec.env`` entry of this name sets its model-call timeout in seconds (default 300)."""
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
_CONNECT_TIMEOUT = 10.0

TextSink = Callable[[str], None]


class ModelCallFailed(Exception):
    """The model call failed; ``code`` is an `ExecutionError.code`, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class CallBudget:
    """How long a model call may take in all, and how long one wait between attempts may be.

    :param timeout: seconds for the whole call, retries included.
    :param max_wait: the longest pause before a retry (the lease: a runner
        does not sit on an execution it cannot show progress on for longer).
    """

    def __init__(self, timeout: float, max_wait: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.max_wait = max_wait

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Provider(Protocol):
    async def complete(
        self,
        spec: pb.AgentInstanceSpec,
        execution_input: pb.ExecutionInput,
        secrets: Mapping[str, str],
        *,
        on_text: TextSink,
        budget: CallBudget,
        on_retry: TextSink | None = None,
    ) -> pb.ExecutionOutput:
        """The model's answer; every piece of its text also goes to ``on_text`` (unmasked: the caller masks).

        ``on_retry`` gets one line before each retry: why, and how long until it (unmasked too).
        """
        ...


class EchoProvider:
    """Answers with the input message and data: no network, no model."""

    async def complete(
        self,
        spec: pb.AgentInstanceSpec,
        execution_input: pb.ExecutionInput,
        secrets: Mapping[str, str],
        *,
        on_text: TextSink,
        budget: CallBudget,
        on_retry: TextSink | None = None,
    ) -> pb.ExecutionOutput:
        on_text(execution_input.message)
        return pb.ExecutionOutput(text=execution_input.message, data=execution_input.data)


class ChatCompletionsProvider:
    """``POST {endpoint}/chat/completions`` with ``stream: true``, retried as the module says."""

    async def complete(
        self,
        spec: pb.AgentInstanceSpec,
        execution_input: pb.ExecutionInput,
        secrets: Mapping[str, str],
        *,
        on_text: TextSink,
        budget: CallBudget,
        on_retry: TextSink | None = None,
    ) -> pb.ExecutionOutput:
        import httpx

        model = spec.model
        if model is None:  # ApplyAgentInstance requires it
            raise ModelCallFailed("MODEL_CONFIG", "the agent instance has no spec.model")
        endpoint = (model.endpoint or DEFAULT_ENDPOINTS.get(model.provider, "")).rstrip("/")
        if not endpoint:
            raise ModelCallFailed("MODEL_CONFIG", f"provider {model.provider!r} needs spec.model.endpoint")
        url = f"{endpoint}/chat/completions"
        body = {"model": model.model, "messages": _messages(spec, execution_input), "stream": True}
        headers = {"Accept": "text/event-stream"}
        if model.credentials:
            credential = resolve(model.credentials, secrets)
            if not (credential.isascii() and credential.isprintable()):  # an HTTP header carries nothing else
                raise ModelCallFailed(
                    "MODEL_CONFIG",
                    f"the credential {model.credentials} holds characters other than printable ASCII, "
                    "which an HTTP header cannot carry; put the key again",
                )
            headers["Authorization"] = "Bearer " + credential
        timeout = httpx.Timeout(budget.timeout, connect=min(_CONNECT_TIMEOUT, budget.timeout))
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=_tls_context()) as client:
            attempt = 0
            while True:
                attempt += 1
                streamed = _Streamed(on_text)
                try:
                    async with asyncio.timeout(max(budget.left(), 0.001)):
                        return await _attempt(client, url, body, headers, streamed)
                except _Retryable as retryable:
                    wait = retryable.retry_after or _backoff(attempt)
                    if streamed.any or wait > min(budget.left(), budget.max_wait):
                        raise ModelCallFailed(retryable.code, f"{retryable} (after {attempt} attempt(s))") from None
                    if on_retry is not None:  # a silent wait of minutes looks like a hang
                        said = "as its Retry-After says" if retryable.retry_after else "backing off"
                        on_retry(f"{retryable.summary}; attempt {attempt + 1} in {wait:.1f} s ({said})")
                    await asyncio.sleep(wait)
                except TimeoutError:
                    raise ModelCallFailed(
                        "MODEL_TIMEOUT", f"the model did not finish within {budget.timeout:g} s ({TIMEOUT_VARIABLE})"
                    ) from None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The one TLS context of this process's model calls: httpx's default (certifi's CAs, or ``SSL_CERT_FILE``).

    A client per call keeps cancellation simple (closing it closes the connection), but one built
    with its own context loads the whole CA bundle again: ~10-40 ms of CPU per execution, and
    native memory churn that fragments the heap, so a runner's RSS grew with every execution it ran
    (benchmarks/runner_rss.py). A context is safe to share between connections.
    """
    import httpx

    return httpx.create_ssl_context()


class _Streamed:
    """Passes text on, remembering whether any was shown (a shown answer is never retried)."""

    def __init__(self, on_text: TextSink) -> None:
        self._on_text = on_text
        self.any = False
        self.parts: list[str] = []

    def __call__(self, text: str) -> None:
        if text:
            self.any = True
            self.parts.append(text)
            self._on_text(text)


class _Retryable(Exception):
    """A failed attempt worth another; ``summary`` is one short line for people, ``str()`` the whole story."""

    def __init__(self, code: str, message: str, summary: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.summary = summary
        self.retry_after = retry_after


async def _attempt(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], streamed: _Streamed
) -> pb.ExecutionOutput:
    import httpx

    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                detail = (await response.aread())[:2000].decode("utf-8", "replace")
                message = f"the model answered HTTP {response.status_code}: {detail}"
                if response.status_code in _RETRIED_STATUSES:
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    summary = f"the model answered HTTP {response.status_code}"
                    raise _Retryable("MODEL_HTTP_ERROR", message, summary, retry_after)
                if response.status_code in (401, 403):
                    raise ModelCallFailed(
                        "MODEL_UNAUTHORIZED", f"the model refused the credentials (spec.model.credentials): {message}"
                    )
                raise ModelCallFailed("MODEL_HTTP_ERROR", message)
            if "text/event-stream" in response.headers.get("content-type", ""):
                await _read_events(response, streamed)
            else:  # a server that ignores "stream": the whole answer at once
                streamed(_content(json.loads(await response.aread())))
    except httpx.TransportError as error:
        if streamed.any:
            raise ModelCallFailed("MODEL_STREAM_BROKEN", f"the model's answer broke off: {error!r}") from None
        raise _Retryable(
            "MODEL_UNREACHABLE", f"cannot reach {url}: {type(error).__name__} {error}", f"cannot reach {url}"
        ) from None
    except ValueError:
        raise ModelCallFailed("MODEL_BAD_RESPONSE", "the model's answer is not JSON") from None
    return pb.ExecutionOutput(text="".join(streamed.parts))


async def _read_events(response: httpx.Response, streamed: _Streamed) -> None:
    """Server-sent events: ``data: {chunk}`` lines, until ``data: [DONE]`` or the end of the body."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        try:
            choices = chunk["choices"]
            delta = (choices[0].get("delta") or {}) if choices else {}
        except (KeyError, TypeError, AttributeError):
            raise ModelCallFailed("MODEL_BAD_RESPONSE", "a streamed chunk has no choices[0].delta") from None
        content = delta.get("content")
        if isinstance(content, str):
            streamed(content)


def _content(reply: Any) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ModelCallFailed("MODEL_BAD_RESPONSE", "the model's answer has no choices[0].message.content") from None
    if content is None:  # an answer with no text (tool calls only, say)
        return ""
    if not isinstance(content, str):
        raise ModelCallFailed("MODEL_BAD_RESPONSE", "the model's choices[0].message.content is not text")
    return content


def _messages(spec: pb.AgentInstanceSpec, execution_input: pb.ExecutionInput) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": spec.instructions}] if spec.instructions else []
    content = execution_input.message
    if execution_input.data is not None:
        content += "\n\n" + json.dumps(execution_input.data.to_dict(), ensure_ascii=False)
    messages.append({"role": "user", "content": content})
    return messages


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _backoff(attempt: int) -> float:
    """Exponential with full jitter, so runners that failed together do not retry together."""
    return random.uniform(0, min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (attempt - 1))) + 0.05


def timeout_of(spec: pb.AgentInstanceSpec) -> float:
    """The agent's model-call timeout: its ``STIGMER_MODEL_TIMEOUT`` env entry, else ``DEFAULT_TIMEOUT``."""
    for variable in spec.env:
        if variable.name == TIMEOUT_VARIABLE:
            try:
                seconds = float(variable.value)
            except ValueError:
                seconds = 0.0
            if not 0 < seconds <= 86_400:
                raise ModelCallFailed(
                    "MODEL_CONFIG", f"spec.env {TIMEOUT_VARIABLE} must be seconds between 0 and 86400"
                )
            return seconds
    return DEFAULT_TIMEOUT


_PROVIDERS: dict[str, Provider] = {
    "echo": EchoProvider(),
    "openai": ChatCompletionsProvider(),
    "ollama": ChatCompletionsProvider(),
    "openai-compatible": ChatCompletionsProvider(),
}

SUPPORTED_PROVIDERS = frozenset(_PROVIDERS)
"""The ``spec.model.provider`` values this runner can call; ``stigmer apply`` warns about any other."""


def provider_for(name: str) -> Provider:
    if name not in _PROVIDERS:
        known = ", ".join(sorted(_PROVIDERS))
        raise ModelCallFailed(
            "MODEL_PROVIDER_UNSUPPORTED", f"this runner cannot call provider {name!r} (it knows {known})"
        )
    return _PROVIDERS[name]
