"""The local Tier 2 stack as background processes: a Temporal dev server, ``stigmer server``, N workers.

Everything lives in ``$STIGMER_HOME/local/`` (0700): ``stack.json`` (the parts'
pids and the addresses; no secret), a ``NAME.pid`` and ``NAME.log`` per part
(the previous run's as ``NAME.log.1``),
``temporal.db`` (Temporal's own persistent state: workflow histories survive a
restart) and ``token`` (0600, the bearer token the workers send to the server).
Each part runs in a session of its own, so closing the terminal that started
it does not stop it, and ``stop`` ends each one's whole process group.

The backend served is the storage the CLI's context names when the stack
starts (``$STIGMER_HOME/local.db`` by default; a SQLite file or a PostgreSQL
database otherwise): it stays the system of record, Temporal only schedules
and retries the work.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .requirements import temporal_binary

__all__ = [
    "Part",
    "Stack",
    "StackError",
    "load_stack",
    "running_stack",
    "stack_dir",
    "start_stack",
    "stop_stack",
    "temporal_health",
]

NAMESPACE = "default"
STARTUP_DEADLINE = 120.0
"""Seconds a part may take to become ready (Temporal takes ~5 s on an idle machine)."""


class StackError(RuntimeError):
    """The stack cannot be started or used; the message is one line naming what failed and where its log is."""


@dataclass
class Part:
    """One background process of the stack."""

    name: str
    pid: int
    started: int
    """Its start time in clock ticks since boot (``/proc/PID/stat``): a recycled pid is not mistaken for it."""
    log: str

    def alive(self) -> bool:
        return _alive(self.pid, self.started)


@dataclass
class Stack:
    """A started stack: what ``stack.json`` holds."""

    temporal_address: str
    ui_address: str
    server_endpoint: str
    task_queue: str
    backend: str = ""
    """The storage ``stigmer server`` serves: a SQLite file or a ``postgresql://`` URL; empty for ``local.db``."""
    grace: float = 30.0
    """Seconds a worker's running executions get when the stack stops (``start --grace``)."""
    namespace: str = NAMESPACE
    parts: list[Part] = field(default_factory=list)

    @property
    def workers(self) -> list[Part]:
        return [part for part in self.parts if part.name.startswith("worker-")]

    def part(self, name: str) -> Part | None:
        return next((part for part in self.parts if part.name == name), None)


def stack_dir() -> Path:
    from stigmer_backend.backends.home import stigmer_home

    path = stigmer_home() / "local"
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def _state_file() -> Path:
    return stack_dir() / "stack.json"


def load_stack() -> Stack | None:
    """The stack ``stack.json`` describes (running or not), or None if none was started."""
    try:
        data = json.loads(_state_file().read_text())
        parts = [Part(**part) for part in data.pop("parts")]
        return Stack(**data, parts=parts)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise StackError(f"cannot read {_state_file()}: {error}; `stigmer local stop` clears it") from None


def running_stack() -> Stack | None:
    """The stack, if its Temporal server is running: then executions run as Temporal workflows."""
    stack = load_stack()
    if stack is None:
        return None
    temporal = stack.part("temporal")
    return stack if temporal is not None and temporal.alive() else None


def start_stack(
    *,
    workers: int,
    concurrency: int,
    grace: float,
    backend: str = "",
    on_status: Callable[[str], None] | None = None,
) -> Stack:
    """Starts every part and waits until each is ready; on any failure stops what it started and raises.

    :param backend: the storage to serve, as a CLI context names it (see ``Stack.backend``).
    """
    say = on_status or (lambda text: None)
    existing = load_stack()
    if existing is not None and any(part.alive() for part in existing.parts):
        raise StackError("the local stack is already running (`stigmer local status`; `stigmer local stop` first)")
    directory = stack_dir()
    for stale in directory.glob("*.pid"):
        stale.unlink()
    task_queue = "stigmer-executions"  # workflow.TASK_QUEUE, spelled here so that this module needs no temporalio
    temporal_port, ui_port, http_port, metrics_port, server_port = _free_ports(5)
    stack = Stack(
        temporal_address=f"127.0.0.1:{temporal_port}",
        ui_address=f"http://127.0.0.1:{ui_port}",
        server_endpoint=f"127.0.0.1:{server_port}",
        task_queue=task_queue,
        backend=backend,
        grace=grace,
    )
    token_file = directory / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    stigmer = _stigmer_script()
    try:
        say(f"starting Temporal on {stack.temporal_address} (state in {directory / 'temporal.db'})")
        # The arguments are the ones `temporal server start-dev --help` documents; the UI listens on loopback only.
        temporal = _spawn(
            stack,
            "temporal",
            [
                temporal_binary(),
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(temporal_port),
                "--ui-port",
                str(ui_port),
                "--http-port",
                str(http_port),
                "--metrics-port",
                str(metrics_port),
                "--db-filename",
                str(directory / "temporal.db"),
                "--namespace",
                NAMESPACE,
            ],
        )
        _wait(temporal, lambda: _temporal_health(stack.temporal_address) == "SERVING", "Temporal to serve")
        say(f"starting stigmer server on {stack.server_endpoint}")
        storage = [] if not backend else ["--backend", backend] if "://" in backend else ["--db", backend]
        server = _spawn(
            stack, "server", [stigmer, "server", "--port", str(server_port), "--token-file", str(token_file), *storage]
        )
        _wait(server, lambda: "listening on " in _log_text(server), "stigmer server to listen")
        for n in range(1, workers + 1):
            worker = _spawn(
                stack,
                f"worker-{n}",
                [
                    stigmer,
                    "local",
                    "worker",
                    "--temporal",
                    stack.temporal_address,
                    "--endpoint",
                    stack.server_endpoint,
                    "--token-file",
                    str(token_file),
                    "--task-queue",
                    task_queue,
                    "--runner-id",
                    f"local-worker-{n}",
                    "--concurrency",
                    str(concurrency),
                    "--grace",
                    str(grace),
                ],
            )
        for worker in stack.workers:
            _wait(worker, functools.partial(_says, worker, " polling "), f"{worker.name} to poll")
    except BaseException:
        stop_stack(stack, grace=0)
        raise
    return stack


def stop_stack(
    stack: Stack | None = None, *, grace: float | None = None, on_status: Callable[[str], None] | None = None
) -> int:
    """Stops the parts gracefully (workers first, Temporal last), killing what outlives its deadline.

    Returns how many parts were running.
    """
    say = on_status or (lambda text: None)
    stack = stack or load_stack()
    if stack is None:
        return 0
    grace = stack.grace if grace is None else grace
    ran = 0
    order = [*stack.workers, *[p for p in (stack.part("server"), stack.part("temporal")) if p is not None]]
    for part in order:
        if not part.alive():
            continue
        ran += 1
        # Workers get the grace their running executions are promised, plus time to say goodbye to Temporal.
        deadline = (grace + 10.0) if part.name.startswith("worker-") else 20.0
        _signal_group(part, signal.SIGTERM)
        if not _exited(part, deadline):
            say(f"{part.name} (pid {part.pid}) did not stop within {deadline:g} s: killed")
            _signal_group(part, signal.SIGKILL)
            _exited(part, 10.0)
        say(f"stopped {part.name} (pid {part.pid})")
    for part in stack.parts:
        with contextlib.suppress(FileNotFoundError):
            (stack_dir() / f"{part.name}.pid").unlink()
    for leftover in (_state_file(), stack_dir() / "token"):  # the token is made anew by each start
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    return ran


def temporal_health(stack: Stack) -> str:
    """``SERVING`` from ``temporal operator cluster health``, or what went wrong in a few words."""
    return _temporal_health(stack.temporal_address)


def _temporal_health(address: str) -> str:
    try:
        done = subprocess.run(
            [temporal_binary(), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return "no answer within 15 s"
    text = (done.stdout + done.stderr).strip()
    if done.returncode == 0 and "SERVING" in text:
        return "SERVING"
    return " ".join(text.split())[-200:] or f"exit {done.returncode}"


# -- processes ---------------------------------------------------------------------------


def _stigmer_script() -> str:
    beside = Path(sys.executable).with_name("stigmer")
    return str(beside) if beside.is_file() else "stigmer"


def _spawn(stack: Stack, name: str, args: list[str]) -> Part:
    directory = stack_dir()
    log = directory / f"{name}.log"
    if log.exists():  # the previous run's log is kept once, and its lines never pass for this run's
        log.replace(log.with_suffix(".log.1"))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    part = Part(name=name, pid=process.pid, started=_start_ticks(process.pid) or 0, log=str(log))
    (directory / f"{name}.pid").write_text(f"{process.pid}\n")
    stack.parts.append(part)
    _save(stack)
    return part


def _save(stack: Stack) -> None:
    path = _state_file()
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(stack), file, indent=2)
        file.write("\n")
    os.replace(tmp, path)


def _log_text(part: Part) -> str:
    try:
        return Path(part.log).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _says(part: Part, text: str) -> bool:
    return text in _log_text(part)


def _wait(part: Part, ready: Callable[[], bool], what: str) -> None:
    """Polls ``ready`` (every 0.2 s) until it holds; ``StackError`` if the part exits or the deadline passes."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not ready():
        if not part.alive():
            raise StackError(f"{part.name} exited while waiting for {what}; see {part.log}")
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {STARTUP_DEADLINE:g} s waiting for {what}; see {part.log}")
        time.sleep(0.2)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_ticks(pid: int) -> int | None:
    """The process's start time (``/proc/PID/stat`` field 22), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int, started: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child (the process that started it): reap it once it exits
    ticks = _start_ticks(pid)
    return ticks is not None and (not started or ticks == started)


def _signal_group(part: Part, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(part.pid, signum)


def _exited(part: Part, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while part.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
