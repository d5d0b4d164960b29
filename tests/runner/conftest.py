"""Fixtures for the runner tests: real ``stigmer`` processes, a private home, a fake model on loopback."""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stigmer_backend.server.launch import ServerProcess
from tests.cli.conftest import Stigmer
from tests.remote_fixtures import isolated_env, write_token_file

from .fake_model import FakeModel, start_fake_model, stop_fake_model

STIGMER = str(Path(sys.executable).with_name("stigmer"))
WAIT = 60.0
"""Seconds a test waits for something that takes well under a second: a bound, never a sleep."""


class Process:
    """A ``stigmer`` subprocess whose stdout and stderr are read as they come, so a test can wait for a line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen([STIGMER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._text = {"stdout": "", "stderr": ""}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.popen.stdout), ("stderr", self.popen.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream) -> None:
        while chunk := stream.read1(65536):
            with self._changed:
                self._text[name] += chunk.decode("utf-8", "replace")
                self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._changed:
            return self._text["stdout"]

    @property
    def stderr(self) -> str:
        with self._changed:
            return self._text["stderr"]

    def wait_for(self, text: str, stream: str = "stderr", timeout: float = WAIT, count: int = 1) -> str:
        """Waits until ``text`` has appeared ``count`` times on ``stream``; returns the stream so far."""

        def seen() -> bool:
            return self._text[stream].count(text) >= count

        with self._changed:
            found = self._changed.wait_for(lambda: seen() or self.popen.poll() is not None, timeout)
            if not found or not seen():
                raise AssertionError(f"{text!r} never appeared {count} time(s) on {stream}: {self._text}")
            return self._text[stream]

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.wait()


class Home:
    """A private ``STIGMER_HOME`` with a test master key: setup runs in-process, the subject in processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cli = Stigmer(path)  # with its own random STIGMER_MASTER_KEY
        self.env = {**isolated_env(path), **self.cli.env}
        self.cli.env["DBUS_SESSION_BUS_ADDRESS"] = self.env["DBUS_SESSION_BUS_ADDRESS"]  # no keychain in-process either
        self.processes: list[Process] = []

    def run(self, *args: str, input: str | None = None):
        """Setup through the CLI, in this process."""
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    def agent(self, name: str, model: str, endpoint: str, *, credentials: str = "", extra_env: str = "") -> None:
        manifest = self.path.parent / f"{name}.yaml"
        credential_line = f"    credentials: '{credentials}'\n" if credentials else ""
        manifest.write_text(
            f"name: {name}\nspec:\n  instructions: Answer.\n  model:\n    provider: openai-compatible\n"
            f"    model: {model}\n    endpoint: '{endpoint}'\n{credential_line}{extra_env}"
        )
        self.run("apply", "-f", str(manifest))

    def start(self, *args: str) -> Process:
        process = Process(list(args), self.env)
        self.processes.append(process)
        return process

    def files(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.path.iterdir() if p.is_file())


@contextlib.contextmanager
def served(
    tmp_path: Path,
    home: Home,
    agent: str,
    model_name: str,
    endpoint: str,
    *flags: str,
    secret: tuple[str, str] | None = None,
) -> Iterator[tuple[ServerProcess, str]]:
    """A ``stigmer server`` with ``agent`` applied, and ``home`` logged in to it; yields it and its token.

    With ``secret`` (name, value), the server holds that secret and the agent's credentials reference it.
    """
    token = secrets.token_hex(24)
    server_home = Home(tmp_path / "server-home")
    server_home.path.mkdir(mode=0o700)
    credentials = ""
    if secret is not None:
        server_home.run("secret", "put", secret[0], input=secret[1])
        credentials = f"${{.secrets.{secret[0]}}}"
    server_home.agent(agent, model_name, endpoint, credentials=credentials)
    token_file = write_token_file(tmp_path / "token", token)
    with ServerProcess.start(["--token-file", str(token_file), *flags], env=server_home.env) as server:
        home.run("login", "--endpoint", server.endpoint, "--plaintext", input=token)
        yield server, token


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    made = Home(path)
    yield made
    for process in made.processes:
        process.stop()


@pytest.fixture
def model() -> Iterator[FakeModel]:
    fake = start_fake_model()
    yield fake
    stop_fake_model(fake)
