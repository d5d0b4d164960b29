"""Model providers: how a runner turns an agent's model section into one call.

``echo`` answers with the input, offline: it exercises the whole execution
plane (claim, lease, context, masking, report) with nothing installed.
``openai``, ``ollama`` and ``openai-compatible`` speak the OpenAI chat
completions API, which Ollama, vLLM, LM Studio and most gateways also serve.
Credentials are resolved from the context at the moment the request is
built, and live only in that request's headers.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Protocol

from stigmer.gen.stigmer.backend import v1 as pb

from .resolver import resolve

__all__ = ["ModelCallFailed", "Provider", "provider_for"]

DEFAULT_ENDPOINTS = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://localhost:11434/v1",
}
TIMEOUT = 300.0


class ModelCallFailed(Exception):
    """The model call failed; ``code`` is an `ExecutionError.code`, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Provider(Protocol):
    async def complete(
        self, spec: pb.AgentInstanceSpec, execution_input: pb.ExecutionInput, secrets: Mapping[str, str]
    ) -> pb.ExecutionOutput: ...


class EchoProvider:
    """Answers with the input message and data: no network, no model."""

    async def complete(self, spec, execution_input, secrets):
        return pb.ExecutionOutput(text=execution_input.message, data=execution_input.data)


class ChatCompletionsProvider:
    """One OpenAI-style ``POST {endpoint}/chat/completions``."""

    async def complete(self, spec, execution_input, secrets):
        model = spec.model
        endpoint = (model.endpoint or DEFAULT_ENDPOINTS.get(model.provider, "")).rstrip("/")
        if not endpoint:
            raise ModelCallFailed("MODEL_CONFIG", f"provider {model.provider!r} needs spec.model.endpoint")
        messages = [{"role": "system", "content": spec.instructions}] if spec.instructions else []
        content = execution_input.message
        if execution_input.data is not None:
            content += "\n\n" + json.dumps(execution_input.data.to_dict(), ensure_ascii=False)
        messages.append({"role": "user", "content": content})
        headers = {"Content-Type": "application/json"}
        if model.credentials:
            credential = resolve(model.credentials, secrets)
            if not (credential.isascii() and credential.isprintable()):  # an HTTP header carries nothing else
                raise ModelCallFailed(
                    "MODEL_CONFIG",
                    f"the credential {model.credentials} holds characters other than printable ASCII, "
                    "which an HTTP header cannot carry; put the key again",
                )
            headers["Authorization"] = "Bearer " + credential
        body = json.dumps({"model": model.model, "messages": messages}).encode()
        request = urllib.request.Request(f"{endpoint}/chat/completions", data=body, headers=headers, method="POST")
        reply = await asyncio.to_thread(_send, request)
        try:
            return pb.ExecutionOutput(text=reply["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise ModelCallFailed(
                "MODEL_BAD_RESPONSE", "the model's answer has no choices[0].message.content"
            ) from None


def _send(request: urllib.request.Request) -> dict:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read(2000).decode("utf-8", "replace")
        raise ModelCallFailed("MODEL_HTTP_ERROR", f"the model answered HTTP {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ModelCallFailed("MODEL_UNREACHABLE", f"cannot reach {request.full_url}: {reason}") from None
    except ValueError:
        raise ModelCallFailed("MODEL_BAD_RESPONSE", "the model's answer is not JSON") from None


_PROVIDERS: dict[str, Provider] = {
    "echo": EchoProvider(),
    "openai": ChatCompletionsProvider(),
    "ollama": ChatCompletionsProvider(),
    "openai-compatible": ChatCompletionsProvider(),
}


def provider_for(name: str) -> Provider:
    if name not in _PROVIDERS:
        known = ", ".join(sorted(_PROVIDERS))
        raise ModelCallFailed(
            "MODEL_PROVIDER_UNSUPPORTED", f"this runner cannot call provider {name!r} (it knows {known})"
        )
    return _PROVIDERS[name]
