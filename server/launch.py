"""Starting ``stigmer server`` as a separate process, for tests, the conformance suite and benchmarks.

with ServerProcess.start(["--db", str(db), "--token-file", str(token_file)]) as server:
    backend = CloudBackend(server.endpoint, token=token)  # plaintext h2c: the server has no TLS here
    ...

The process is the real command-line server (the ``stigmer`` script beside
the running interpreter), started with ``--port 0`` unless
the arguments name a port; its address is read from the ``listening on
HOST:PORT`` line it prints, waiting at most a deadline. Its stderr goes to a
file, readable with ``stderr_text()`` while it runs and after.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

__all__ = ["LISTENING_PREFIX", "ServerProcess", "ServerStartError"]

LISTENING_PREFIX = "listening on "
"""What ``stigmer server`` prints on stdout, followed by ``HOST:PORT``, once it accepts connections."""


class ServerStartError(RuntimeError):
    """The server exited or stayed silent before printing its address; the message holds its stderr."""


class ServerProcess:
    """A running ``stigmer server`` subprocess; use ``start`` (a context manager that stops it)."""

    def __init__(self, process: subprocess.Popen[bytes], endpoint: str, stderr: IO[bytes]) -> None:
        self.process = process
        self.endpoint = endpoint
        """``HOST:PORT`` it listens on."""
        self._stderr = stderr

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])

    @classmethod
    def start(
        cls,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """Starts ``stigmer server ARGS`` and waits until it listens.

        :param args: options for ``stigmer server``; ``--port 0`` is added when none is given.
        :param env: the child's whole environment (default: this process's).
        :param timeout: seconds to wait for the ``listening on`` line.

        Raises ``ServerStartError`` (with the server's stderr) if it exits or
        does not listen in time; the process is then stopped.
        """
        args = list(args)
        if "--port" not in args:
            args += ["--port", "0"]
        stderr = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [*_stigmer_command(), "server", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=dict(env) if env is not None else None,
        )
        try:
            endpoint = _read_address(process, timeout)
        except BaseException as error:
            _terminate(process, 5.0)
            stderr.seek(0)
            text = stderr.read().decode(errors="replace").strip()
            stderr.close()
            if isinstance(error, ServerStartError):
                raise ServerStartError(f"{error}; its stderr:\n{text}") from None
            raise
        return cls(process, endpoint, stderr)

    def stderr_text(self) -> str:
        """Everything the server wrote to stderr so far."""
        self._stderr.flush()
        with open(self._stderr.fileno(), "rb", closefd=False) as file:
            file.seek(0)
            return file.read().decode(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL if it is still running after ``timeout``; the exit code."""
        return _terminate(self.process, timeout)

    def kill(self) -> int:
        """SIGKILL: no shutdown at all, as when the machine or the process dies."""
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def close(self) -> None:
        """Stops the process if it runs, and releases its pipes and stderr file."""
        self.stop()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stigmer_command() -> list[str]:
    """The installed ``stigmer`` script beside this interpreter, or the same entry point through it."""
    script = Path(sys.executable).with_name("stigmer")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from stigmer_backend.cli.main import main; main()"]


def _read_address(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The address from the first stdout line, read without blocking past ``timeout``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerStartError(f"stigmer server printed no address within {timeout:g}s")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise ServerStartError(f"stigmer server exited with code {process.wait()} before listening")
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode(errors="replace").strip()
    if not line.startswith(LISTENING_PREFIX):
        raise ServerStartError(f"stigmer server printed {line!r} instead of its address")
    return line[len(LISTENING_PREFIX) :]


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
