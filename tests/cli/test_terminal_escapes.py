"""Text from the store or a model reaches a terminal as visible escapes, never as control sequences."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import threading
import tty
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

STIGMER = str(Path(sys.executable).with_name("stigmer"))
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\rfake line\u202etxt.exe"
RAW_CONTROLS = (b"\x1b", b"\x07", b"\r", "\u202e".encode())


async def _execution_with_hostile_text(db: Path) -> str:
    async with SqliteBackend(db) as backend:
        spec = pb.AgentInstanceSpec(model=pb.ModelConfig(provider="ollama", model="llama3"))
        await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="helper", spec=spec))
        created = await backend.create_execution(
            pb.CreateExecutionRequest(
                request_id="r-1",
                agent_instance=pb.AgentInstanceRef(name="helper"),
                input=pb.ExecutionInput(message=HOSTILE),
            )
        )
        execution_id = created.execution.id
        await backend.update_execution_status(
            pb.UpdateExecutionStatusRequest(
                execution_id=execution_id,
                phase=pb.ExecutionPhase.RUNNING,
                runner_id="r",
                message=HOSTILE,
                lease_duration=timedelta(minutes=5),
            )
        )
        return execution_id


def _on_a_terminal(args: list[str], env: dict[str, str], *, exit_code: int = 0) -> bytes:
    """What ``stigmer ARGS`` writes to a pseudo-terminal (raw mode: the terminal adds no CR itself)."""
    controller, terminal = pty.openpty()
    tty.setraw(terminal)
    process = subprocess.Popen([STIGMER, *args], stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL, env=env)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=60) == exit_code, b"".join(chunks)
    return b"".join(chunks)


@pytest.mark.parametrize("args", [["execution", "get"], ["execution", "get", "-o", "json"], ["execution", "list"]])
def test_stored_text_is_shown_escaped_on_a_terminal(tmp_path, args):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    execution_id = asyncio.run(_execution_with_hostile_text(home / "local.db"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    shown = _on_a_terminal([*args, execution_id] if args[1] == "get" else args, env)
    assert b"fake line" in shown
    for control in RAW_CONTROLS:
        assert control not in shown
    assert (b"\\x1b" in shown or b"\\u001b" in shown) and b"\\u202e" in shown  # visible, as escapes
    # Piped, the same command prints the exact text, for scripts.
    if args == ["execution", "get", "-o", "json"]:
        piped = subprocess.run([STIGMER, *args, execution_id], capture_output=True, env=env, timeout=60)
        assert "\u202e".encode() in piped.stdout


class _HostileModel(BaseHTTPRequestHandler):
    """A model endpoint streaming its answer (SSE) in pieces that carry terminal controls, or failing with them."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/failing/"):
            payload = HOSTILE.encode()
            self.send_response(400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in (HOSTILE[:9], HOSTILE[9:], " done"):
            chunk = {"choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_model() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileModel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/v1", "/failing/v1"], ids=["streamed answer", "model error"])
def test_agent_execute_shows_model_output_escaped_on_a_terminal(tmp_path: Path, hostile_model: str, path: str) -> None:
    """What the model streams (stdout) or fails with (stderr) reaches the terminal as escapes, never raw."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(
        f"name: hostile\nspec:\n  model: {{provider: openai-compatible, model: m, endpoint: '{hostile_model}{path}'}}\n"
    )
    subprocess.run([STIGMER, "apply", "-f", str(manifest)], env=env, check=True, capture_output=True, timeout=60)
    failing = path.startswith("/failing/")
    shown = _on_a_terminal(["agent", "execute", "hostile", "hi"], env, exit_code=3 if failing else 0)
    assert b"fake line" in shown
    for control in RAW_CONTROLS:
        assert control not in shown
    assert b"\\x1b" in shown and b"\\u202e" in shown  # visible, as escapes
