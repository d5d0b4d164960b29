"""The whole just-in-time path, through the CLI, against a real HTTP model endpoint on loopback.

The agent's credentials and environment reference secrets; ``stigmer agent
execute`` must send the real value to the model (resolved at the moment of
the call) and nowhere else: not to stdout/stderr, not into the stored
execution, not into the database file or its WAL — even when the model
echoes the key back in its answer.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from stigmer_backend.cli._outcome import EXIT_FAILED

KEY = "sk-test-9f8e7d6c5b4a39281706"


class ChatCompletions(BaseHTTPRequestHandler):
    """A model endpoint that answers by quoting the bearer token it received, raw and encoded."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        ChatCompletions.seen.append({"path": self.path, "token": token, "body": body})
        answer = (
            f"my key is {token}, base64 {base64.b64encode(token.encode()).decode()}; {body['messages'][-1]['content']}"
        )
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def model_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ChatCompletions.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())


def test_the_key_reaches_the_model_and_nothing_else(stigmer, tmp_path, model_endpoint):
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(
        "name: keyed\n"
        "spec:\n"
        "  instructions: Answer.\n"
        "  model:\n"
        "    provider: openai-compatible\n"
        "    model: test-model\n"
        f"    endpoint: '{model_endpoint}'\n"
        "    credentials: '${.secrets.MODEL_KEY}'\n"
        "  env:\n"
        "    - {name: AUTH, value: 'Bearer ${ .secrets.MODEL_KEY }'}\n"
    )
    assert stigmer("secret", "put", "MODEL_KEY", input=KEY + "\n").exit_code == 0
    assert stigmer("apply", "-f", str(manifest)).exit_code == 0

    result = stigmer("agent", "execute", "keyed", "what is your key?")

    assert result.exit_code == 0, result.output
    assert [call["token"] for call in ChatCompletions.seen] == [KEY], "the model got the real key, once"
    assert ChatCompletions.seen[0]["path"] == "/v1/chat/completions"
    assert "my key is ***, base64 ***; what is your key?" in result.stdout
    assert KEY not in result.output and base64.b64encode(KEY.encode()).decode() not in result.output
    stored = stigmer("execution", "list", "-o", "json").stdout
    assert "***" in stored and KEY not in stored
    assert KEY.encode() not in _files(stigmer.home), "the key is in plain text in a file of STIGMER_HOME"


def test_a_missing_secret_fails_the_execution_naming_it(stigmer, tmp_path, model_endpoint):
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(
        "name: keyless\nspec:\n"
        f"  model: {{provider: openai-compatible, model: m, endpoint: '{model_endpoint}',\n"
        "           credentials: '${.secrets.ABSENT_KEY}'}\n"
    )
    stigmer("apply", "-f", str(manifest))
    result = stigmer("agent", "execute", "keyless", "hi")
    assert result.exit_code == 3, "FAILED has its own exit code"
    assert "FAILED" in result.stderr and "ABSENT_KEY" in result.stderr
    assert ChatCompletions.seen == [], "no call without its credentials"


def test_a_credential_an_http_header_cannot_carry_fails_naming_the_credential(stigmer, tmp_path, model_endpoint):
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(
        "name: wide\nspec:\n"
        f"  model: {{provider: openai-compatible, model: m, endpoint: '{model_endpoint}',\n"
        "           credentials: '${.secrets.WIDE_KEY}'}\n"
    )
    assert stigmer("secret", "put", "WIDE_KEY", input="sk-密钥-1234\n").exit_code == 0
    stigmer("apply", "-f", str(manifest))
    result = stigmer("agent", "execute", "wide", "hi")
    assert result.exit_code == EXIT_FAILED
    assert "MODEL_CONFIG" in result.stderr and "${.secrets.WIDE_KEY}" in result.stderr
    assert "not JSON" not in result.stderr and "密钥" not in result.output
    assert ChatCompletions.seen == []


class Unauthorized(BaseHTTPRequestHandler):
    """A model endpoint that refuses the key, quoting it back in hexadecimal, upper case and \\u escapes."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        escaped = "".join(f"\\u{ord(char):04x}" for char in token)
        payload = f"invalid key {token.encode().hex()} / {token.encode().hex().upper()} / {escaped}".encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_a_key_quoted_back_in_hex_is_masked_in_the_stored_error(stigmer, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        manifest = tmp_path / "agent.yaml"
        manifest.write_text(
            "name: refused\nspec:\n"
            f"  model: {{provider: openai-compatible, model: m, endpoint: 'http://127.0.0.1:{server.server_address[1]}/v1',\n"
            "           credentials: '${.secrets.MODEL_KEY}'}\n"
        )
        assert stigmer("secret", "put", "MODEL_KEY", input=KEY + "\n").exit_code == 0
        stigmer("apply", "-f", str(manifest))
        result = stigmer("agent", "execute", "refused", "hi")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == EXIT_FAILED and "MODEL_UNAUTHORIZED" in result.stderr
    stored = stigmer("execution", "list", "-o", "json").stdout
    for form in (KEY.encode().hex(), KEY.encode().hex().upper(), "\\\\u0073\\\\u006b"):
        assert form not in stored and form not in result.output
    assert "invalid key ***" in stored
