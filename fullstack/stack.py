"""The local Tier 2 stack as background processes: a Temporal dev server, ``stigmer server``, N workers.

Everything lives in ``$STIGMER_HOME/local/`` (0700): ``stack.json`` (the parts'
pids, states, restarts and the addresses; no secret), a ``NAME.pid`` and ``NAME.log``
per part and for the supervisor (the previous run's as ``NAME.log.1``),
``temporal.db`` (Temporal's own persistent state: workflow histories survive a
restart) and ``token`` (0600, the bearer token the workers send to the server).
Each part runs in a session of its own, so closing the terminal that started
it does not stop it, and ``stop`` ends each one's whole process group.

The parts are started, restarted when they die and stopped by one more process,
the stack's supervisor (``fullstack.supervisor``, which says why it is one
process); this module is the CLI's side: ``start_stack`` starts the supervisor
and follows its progress, ``stop_stack`` asks it to stop (or stops what a dead
one left), ``ready_stack`` waits for parts it restarts.

The backend served is the storage the CLI's context names when the stack
starts (``$STIGMER_HOME/local.db`` by default; a SQLite file or a PostgreSQL
database otherwise): it stays the system of record, Temporal only schedules
and retries the work.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
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
    "FAILED",
    "READY",
    "RESTARTING",
    "STARTING",
    "Part",
    "Stack",
    "StackError",
    "describe_exit",
    "exited",
    "free_ports",
    "load_stack",
    "log_since",
    "open_log",
    "ready_stack",
    "save_stack",
    "stack_dir",
    "start_stack",
    "start_ticks",
    "stigmer_script",
    "stop_parts",
    "stop_stack",
    "temporal_health",
    "temporal_health_at",
]

NAMESPACE = "default"
STARTUP_DEADLINE = 120.0
"""Seconds a part may take to become ready (Temporal takes ~5 s on an idle machine)."""


class StackError(RuntimeError):
    """The stack cannot be started or used; the message is one line naming what failed and where its log is."""


STARTING, READY, RESTARTING, FAILED = "starting", "ready", "restarting", "failed"
"""A part's state as its supervisor records it in ``stack.json``."""


@dataclass
class Part:
    """One background process of the stack (or its supervisor)."""

    name: str
    pid: int
    started: int
    """Its start time in clock ticks since boot (``/proc/PID/stat``): a recycled pid is not mistaken for it."""
    log: str
    state: str = STARTING
    restarts: int = 0
    """How many times the supervisor started it again after it exited unexpectedly."""
    last_exit: str = ""
    """How its last unexpected exit went (``exit 1``, ``killed by SIGKILL``); empty if it never exited."""
    note: str = ""
    """Why it is in its state, when that is not plain (``gave up after 8 quick failures``)."""

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
    supervisor: Part | None = None
    """The process that started the parts, restarts them and stops them (``fullstack.supervisor``)."""

    @property
    def workers(self) -> list[Part]:
        return [part for part in self.parts if part.name.startswith("worker-")]

    @property
    def every_process(self) -> list[Part]:
        return [*self.parts, *([self.supervisor] if self.supervisor is not None else [])]

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
        supervisor = data.pop("supervisor", None)
        return Stack(**data, parts=parts, supervisor=Part(**supervisor) if supervisor is not None else None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise StackError(f"cannot read {_state_file()}: {error}; `stigmer local stop` clears it") from None


def start_stack(
    *,
    workers: int,
    concurrency: int,
    grace: float,
    backend: str = "",
    give_up_after: int | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Stack:
    """Starts the supervisor, which starts every part; returns once each is ready, else raises.

    The supervisor reports its progress through a pipe (``status ...`` lines, then
    ``ready`` or ``error ...``); if it dies first, the pipe's end says so. Interrupted
    here (Ctrl-C), the supervisor is told to stop what it started.

    :param backend: the storage to serve, as a CLI context names it (see ``Stack.backend``).
    :param give_up_after: quick failures in a row after which a part is not restarted (the supervisor's default).
    """
    say = on_status or (lambda text: None)
    existing = load_stack()
    if existing is not None and any(part.alive() for part in existing.every_process):
        raise StackError("the local stack is already running (`stigmer local status`; `stigmer local stop` first)")
    directory = stack_dir()
    for stale in directory.glob("*.pid"):
        stale.unlink()
    with contextlib.suppress(FileNotFoundError):
        _state_file().unlink()
    report, report_end = os.pipe()
    log = open_log(directory / "supervisor.log", fresh=True)
    try:
        supervisor = subprocess.Popen(
            [
                stigmer_script(),
                "local",
                "supervise",
                "--workers",
                str(workers),
                "--concurrency",
                str(concurrency),
                "--grace",
                str(grace),
                "--backend",
                backend,
                "--report-fd",
                str(report_end),
                *(["--give-up-after", str(give_up_after)] if give_up_after is not None else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(report_end,),
        )
    finally:
        os.close(report_end)
        os.close(log)
    error = ""
    try:
        with os.fdopen(report, errors="replace") as reports:
            for line in reports:
                kind, _, text = line.rstrip("\n").partition(" ")
                if kind == "status":
                    say(text)
                elif kind == "error":
                    error = text
                elif kind == "ready":
                    stack = load_stack()
                    if stack is not None:
                        return stack
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            supervisor.send_signal(signal.SIGTERM)
        supervisor.wait()
        raise
    supervisor.wait()
    raise StackError(
        error or f"the supervisor exited ({describe_exit(supervisor.returncode)}); see {directory / 'supervisor.log'}"
    )


def stop_stack(
    stack: Stack | None = None, *, grace: float | None = None, on_status: Callable[[str], None] | None = None
) -> int:
    """Stops the stack gracefully: the supervisor stops its parts in order, then exits.

    What the supervisor wrote while stopping (each part stopped, any it had to kill) is
    passed to ``on_status``. A supervisor that is gone (killed, or it did not stop in
    time) leaves this process to stop whatever parts still run. Returns how many
    parts were running.
    """
    say = on_status or (lambda text: None)
    stack = stack or load_stack()
    if stack is None:
        return 0
    grace = stack.grace if grace is None else grace
    ran = sum(part.alive() for part in stack.parts)
    supervisor = stack.supervisor
    if supervisor is not None and supervisor.alive():
        log = Path(supervisor.log)
        offset = log.stat().st_size if log.exists() else 0
        os.kill(supervisor.pid, signal.SIGTERM)
        deadline = (
            len(stack.workers) * (grace + 10.0) + 20.0 + 20.0 + 10.0
        )  # the parts' deadlines (stop_parts), and some
        if not exited(supervisor, deadline):
            say(f"supervisor (pid {supervisor.pid}) did not stop within {deadline:g} s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor.pid, signal.SIGKILL)
            exited(supervisor, 10.0)
        for line in log_since(log, offset).splitlines():
            text = line.partition(" ")[2]  # after the supervisor's timestamp
            if text.startswith("stopped ") or " did not stop " in text:
                say(text)
    # Whatever the supervisor did not stop (it was killed; its parts got SIGTERM as it died).
    stop_parts(stack, grace=grace, on_status=say)
    with contextlib.suppress(FileNotFoundError):
        (stack_dir() / "supervisor.pid").unlink()
    return ran


def stop_parts(stack: Stack, *, grace: float, on_status: Callable[[str], None]) -> None:
    """Stops each running part (workers first, Temporal last), killing what outlives its deadline; clears the state."""
    order = [*stack.workers, *[p for p in (stack.part("server"), stack.part("temporal")) if p is not None]]
    for part in order:
        if not part.alive():
            continue
        # Workers get the grace their running executions are promised, plus time to say goodbye to Temporal.
        deadline = (grace + 10.0) if part.name.startswith("worker-") else 20.0
        _signal_group(part, signal.SIGTERM)
        if not exited(part, deadline):
            on_status(f"{part.name} (pid {part.pid}) did not stop within {deadline:g} s: killed")
            _signal_group(part, signal.SIGKILL)
            exited(part, 10.0)
        on_status(f"stopped {part.name} (pid {part.pid})")
    for part in stack.parts:
        with contextlib.suppress(FileNotFoundError):
            (stack_dir() / f"{part.name}.pid").unlink()
    for leftover in (_state_file(), stack_dir() / "token"):  # the token is made anew by each start
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def ready_stack(
    stack: Stack, *, needed: tuple[str, ...], wait: float, on_status: Callable[[str], None] | None = None
) -> Stack | None:
    """The stack once its ``needed`` parts are ready, waiting up to ``wait`` s while the supervisor restarts one.

    Raises ``StackError`` (one line: which part is down, why, what to run) when the
    supervisor is gone, gave up on a needed part, or the part is not back in time.
    None if the stack is stopped meanwhile.
    """
    say = on_status or (lambda text: None)
    deadline = time.monotonic() + wait
    announced = False
    while True:
        supervisor = stack.supervisor
        if supervisor is None or not supervisor.alive():
            pid = f" (pid {supervisor.pid})" if supervisor is not None else ""
            raise StackError(
                f"the local stack's supervisor{pid} is not running, so nothing restarts its parts; "
                "`stigmer local stop`, then `stigmer local start`"
            )
        starting = [name for name in needed if stack.part(name) is None]  # `local start` has not got to it yet
        if starting:
            if time.monotonic() > deadline:
                raise StackError(
                    f"the local stack's {starting[0]} did not start within {wait:g} s; `stigmer local status`"
                )
        else:
            parts = [part for part in map(stack.part, needed) if part is not None]
            down = [part for part in parts if part.state != READY or not part.alive()]
            if not down:
                return stack
            part = down[0]
            if part.state == FAILED:
                raise StackError(
                    f"the local stack's {part.name} is down: {part.note} (last: {part.last_exit}); see {part.log}; "
                    "`stigmer local stop`, then `stigmer local start`"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"the local stack's {part.name} is down and was not back within {wait:g} s "
                    f"(restart {part.restarts}; see {part.log}); `stigmer local status`"
                )
            if not announced:
                first = part.state == STARTING and part.alive() and not part.restarts
                doing = "is starting" if first else "is down and being restarted"
                say(f"the local stack's {part.name} {doing}; waiting up to {wait:g} s for it")
                announced = True
        time.sleep(0.2)
        reloaded = load_stack()
        if reloaded is None:
            return None
        stack = reloaded


def temporal_health(stack: Stack) -> str:
    """``SERVING`` from ``temporal operator cluster health``, or what went wrong in a few words."""
    return temporal_health_at(stack.temporal_address)


def temporal_health_at(address: str, *, timeout: float = 15) -> str:
    try:
        done = subprocess.run(
            [temporal_binary(), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:g} s"
    text = (done.stdout + done.stderr).strip()
    if done.returncode == 0 and "SERVING" in text:
        return "SERVING"
    return " ".join(text.split())[-200:] or f"exit {done.returncode}"


# -- processes ---------------------------------------------------------------------------


def stigmer_script() -> str:
    beside = Path(sys.executable).with_name("stigmer")
    return str(beside) if beside.is_file() else "stigmer"


def open_log(path: Path, *, fresh: bool) -> int:
    """A descriptor appending to ``path`` (0600) for a child's output; ``fresh`` keeps the previous run's as ``.log.1``.

    Appending, a restarted part's output follows its predecessor's and the supervisor's line about the restart.
    """
    if fresh and path.exists():  # the previous run's log is kept once, and its lines never pass for this run's
        path.replace(path.with_suffix(".log.1"))
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0), 0o600)


def save_stack(stack: Stack) -> None:
    """Writes ``stack.json`` atomically (a reader never sees half of it) and a pid file per process."""
    path = _state_file()
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(stack), file, indent=2)
        file.write("\n")
    os.replace(tmp, path)
    for part in stack.every_process:
        pid_file = stack_dir() / f"{part.name}.pid"
        if not pid_file.exists() or pid_file.read_text() != f"{part.pid}\n":
            pid_file.write_text(f"{part.pid}\n")


def log_since(log: Path | str, offset: int) -> str:
    """What was written to ``log`` after its first ``offset`` bytes."""
    try:
        with open(log, "rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def describe_exit(returncode: int | None) -> str:
    """``exit 1`` or ``killed by SIGKILL``, from a ``Popen.returncode``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit {returncode}"


_LAST_PORT = 65_535


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free now, for parts that bind them later.

    Chosen outside the kernel's ephemeral range where it is known: a port from that range (what
    binding port 0 gives) can be handed to any outgoing connection or port-0 listener before the
    part binds it, and Temporal's dev server opens many of both while it starts, before its UI
    binds (a CI run failed with the UI's port, picked by binding port 0, taken before Temporal bound
    it). Outside the range, only another process choosing the same port on purpose can take it.
    """
    ephemeral = _ephemeral_ports()
    outside = [port for port in range(10_000, _LAST_PORT + 1) if port not in ephemeral]
    sockets: list[socket.socket] = []
    try:
        for port in random.sample(outside, min(len(outside), 64 * count)):
            if len(sockets) == count:
                break
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use
                sock.close()
                continue
            sockets.append(sock)
        while len(sockets) < count:  # every port tried was taken
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ephemeral_ports() -> range:
    """The ports the kernel assigns by itself (Linux); empty where that cannot be read."""
    try:
        low, high = (int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return range(0)
    return range(low, high + 1)


def start_ticks(pid: int) -> int | None:
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
    ticks = start_ticks(pid)
    return ticks is not None and (not started or ticks == started)


def _signal_group(part: Part, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(part.pid, signum)


def exited(part: Part, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while part.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
