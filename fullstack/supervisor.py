"""The supervisor of the local Tier 2 stack: one process that starts the parts, restarts those that die, stops them.

Why one supervisor that owns the parts, rather than a small keeper per part: only
a process's parent learns at once, without polling, how it ended (``waitpid``:
its exit code or the signal that killed it), so the parent is where a restart
and the "last exit" it records belong. One owner also keeps the order a set of
independent keepers could only agree on by talking to each other: parts start
as they depend on each other (Temporal, the server, then the workers), a dead
worker is started again only once Temporal and the server are ready (else it
would spend its quick failures on a refused connection), and a stop ends the
workers before the server before Temporal. And it is one process to signal
(``stigmer local stop`` sends it SIGTERM) and one pid file to trust.

A restarted part gets its command line again: the same ports, Temporal's same
database file, the server's same endpoint and token, so clients and workers
reconnect by themselves. It waits 0.5 s, doubling at each quick failure up to
30 s; a part that stayed up 30 s starts again from 0.5 s; after 8 quick failures
in a row the supervisor gives up on it and says so in its log, its own log and
``stack.json``, which ``stigmer local status`` shows (state, restart count, last
exit). Each exit and restart is a line in the part's log.

The parts die with their supervisor: each is started with the kernel's
parent-death signal (``PR_SET_PDEATHSIG`` = SIGTERM), so a supervisor killed
with kill -9 leaves nothing running unsupervised (workers get their grace, then
exit); ``stigmer local status`` says the supervisor is not running and
``stigmer agent execute`` refuses in one line until ``stop`` and ``start``.
The parent-death signal fires when the *thread* that forked the child ends, so
the supervisor is one thread: it sleeps in ``select`` on a signal wakeup pipe,
woken by SIGCHLD when a part exits and by SIGTERM when it is to stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from .requirements import temporal_binary
from .stack import (
    FAILED,
    NAMESPACE,
    READY,
    RESTARTING,
    STARTING,
    STARTUP_DEADLINE,
    Part,
    Stack,
    StackError,
    describe_exit,
    free_ports,
    log_since,
    open_log,
    save_stack,
    stack_dir,
    start_ticks,
    stigmer_script,
    stop_parts,
    temporal_health_at,
)

__all__ = ["FIRST_DELAY", "MAX_DELAY", "MAX_QUICK_FAILURES", "STABLE_AFTER", "restart_delay", "supervise"]

FIRST_DELAY = 0.5
"""Seconds before the first restart of a part that exited."""
MAX_DELAY = 30.0
"""The longest wait between restarts (the delay doubles at each quick failure)."""
STABLE_AFTER = 30.0
"""A part up this many seconds when it exits failed after a while, not quickly: its delay starts again."""
MAX_QUICK_FAILURES = 8
"""Quick failures in a row after which the supervisor gives up on a part."""
READY_CHECK_EVERY = 0.2
"""Seconds between two looks at whether a started part is ready (its log, Temporal's health)."""
TASK_QUEUE = "stigmer-executions"  # workflow.TASK_QUEUE, spelled here so that the supervisor needs no temporalio
PR_SET_PDEATHSIG = 1

_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


class _Stop(BaseException):
    """SIGTERM, SIGINT or SIGHUP while the parts start: stop what was started."""


@dataclass
class _Child:
    """A part as its supervisor keeps it: how to start it, when it is ready, its failures."""

    part: Part
    args: list[str]
    ready: Callable[[int], bool]
    """Whether the part is ready, given the size its log had when it was started."""
    needs: tuple[str, ...] = ()
    """Parts that must be ready before this one is started again."""
    process: subprocess.Popen[bytes] | None = None
    since: float = 0.0
    offset: int = 0
    quick_failures: int = 0
    due: float | None = None
    """When it is to be started again (monotonic clock), while it waits to be."""
    next_check: float = 0.0


def restart_delay(quick_failures: int, give_up_after: int = MAX_QUICK_FAILURES) -> float | None:
    """Seconds before a part starts again after its ``quick_failures``-th quick failure in a row; None: give up."""
    if quick_failures > give_up_after:
        return None
    return min(FIRST_DELAY * 2.0 ** (quick_failures - 1), MAX_DELAY)


def supervise(
    *,
    workers: int,
    concurrency: int,
    grace: float,
    backend: str,
    report_fd: int | None,
    give_up_after: int = MAX_QUICK_FAILURES,
) -> int:
    """Runs the supervisor until it is told to stop; the exit code of ``stigmer local supervise``."""
    return _Supervisor(report_fd, give_up_after).run(
        workers=workers, concurrency=concurrency, grace=grace, backend=backend
    )


class _Supervisor:
    def __init__(self, report_fd: int | None, give_up_after: int) -> None:
        self.report = report_fd
        self.give_up_after = give_up_after
        self.stopping = False
        self.children: dict[str, _Child] = {}
        self.pid = os.getpid()
        directory = stack_dir()
        temporal_port, ui_port, http_port, metrics_port, server_port = free_ports(5)
        self.ports = (temporal_port, ui_port, http_port, metrics_port, server_port)
        self.stack = Stack(
            temporal_address=f"127.0.0.1:{temporal_port}",
            ui_address=f"http://127.0.0.1:{ui_port}",
            server_endpoint=f"127.0.0.1:{server_port}",
            task_queue=TASK_QUEUE,
            supervisor=Part(
                "supervisor", self.pid, start_ticks(self.pid) or 0, str(directory / "supervisor.log"), READY
            ),
        )

    # -- talking ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """A line in the supervisor's log, and to ``stigmer local start`` while it waits."""
        print(f"{_now()} {text}", flush=True)
        self._report("status", text)

    def _report(self, kind: str, text: str = "") -> None:
        if self.report is None:
            return
        try:
            os.write(self.report, f"{kind} {text}\n".encode())
        except OSError:  # `stigmer local start` is gone (interrupted): the stack runs on
            self._end_report()

    def _end_report(self) -> None:
        if self.report is not None:
            with contextlib.suppress(OSError):
                os.close(self.report)
            self.report = None

    def _tell(self, child: _Child, text: str) -> None:
        """A line in the part's own log (between its outputs) and in the supervisor's."""
        with contextlib.suppress(OSError), os.fdopen(open_log(Path(child.part.log), fresh=False), "a") as log:
            log.write(f"--- stigmer local supervisor, {_now()}: {text} ---\n")
        print(f"{_now()} {text}", flush=True)

    # -- the run ----------------------------------------------------------------------------

    def run(self, *, workers: int, concurrency: int, grace: float, backend: str) -> int:
        wake, wake_end = os.pipe()
        os.set_blocking(wake, False)
        os.set_blocking(wake_end, False)
        signal.set_wakeup_fd(wake_end, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _wake_only)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _stop_now)
        self.stack.backend, self.stack.grace = backend, grace
        try:
            self._define(workers=workers, concurrency=concurrency, grace=grace, backend=backend)
            save_stack(self.stack)
            self._launch()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, self._stop_later)
        except _Stop:
            self.say("told to stop while starting: stopping what was started")
            self._stop(0)
            return 1
        except StackError as error:
            print(f"{_now()} {error}", flush=True)
            self._report("error", str(error))
            self._stop(0)
            return 1
        except BaseException:
            self._stop(0)
            raise
        self.say(f"every part is ready; supervising (pid {self.pid})")
        self._report("ready")
        self._end_report()
        self._loop(wake)
        self.say("stopping: told to stop")
        self._stop(grace)
        return 0

    def _stop(self, grace: float) -> None:
        stop_parts(self.stack, grace=grace, on_status=lambda text: print(f"{_now()} {text}", flush=True))
        with contextlib.suppress(FileNotFoundError):
            (stack_dir() / "supervisor.pid").unlink()
        self._end_report()

    def _stop_later(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _define(self, *, workers: int, concurrency: int, grace: float, backend: str) -> None:
        directory = stack_dir()
        stack = self.stack
        temporal_port, ui_port, http_port, metrics_port, server_port = self.ports
        token_file = directory / "token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32) + "\n")

        def child(name: str, args: list[str], ready: Callable[[int], bool], needs: tuple[str, ...] = ()) -> None:
            part = Part(name=name, pid=0, started=0, log=str(directory / f"{name}.log"))
            self.children[name] = _Child(part, args, ready, needs)

        def says(name: str, text: str) -> Callable[[int], bool]:
            return lambda offset: text in log_since(directory / f"{name}.log", offset)

        # The arguments are the ones `temporal server start-dev --help` documents; the UI listens on loopback only.
        temporal = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(temporal_port)]
        temporal += ["--ui-port", str(ui_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port)]
        temporal += ["--db-filename", str(directory / "temporal.db"), "--namespace", NAMESPACE]
        child("temporal", temporal, lambda offset: temporal_health_at(stack.temporal_address, timeout=5) == "SERVING")
        stigmer = stigmer_script()
        storage = [] if not backend else ["--backend", backend] if "://" in backend else ["--db", backend]
        server = [stigmer, "server", "--port", str(server_port), "--token-file", str(token_file), *storage]
        child("server", server, says("server", "listening on "))
        for n in range(1, workers + 1):
            worker = [stigmer, "local", "worker", "--temporal", stack.temporal_address]
            worker += ["--endpoint", stack.server_endpoint, "--token-file", str(token_file)]
            worker += ["--task-queue", TASK_QUEUE, "--runner-id", f"local-worker-{n}"]
            worker += ["--concurrency", str(concurrency), "--grace", str(grace)]
            child(f"worker-{n}", worker, says(f"worker-{n}", " polling "), needs=("temporal", "server"))

    def _launch(self) -> None:
        """Starts the parts in order, each once the one before is ready; ``StackError`` if one is not."""
        directory = stack_dir()
        self.say(f"starting Temporal on {self.stack.temporal_address} (state in {directory / 'temporal.db'})")
        self._start(self.children["temporal"])
        self._await_ready(self.children["temporal"], "Temporal to serve")
        self.say(f"starting stigmer server on {self.stack.server_endpoint}")
        self._start(self.children["server"])
        self._await_ready(self.children["server"], "stigmer server to listen")
        workers = [child for name, child in self.children.items() if name.startswith("worker-")]
        for worker in workers:
            self._start(worker)
        for worker in workers:
            self._await_ready(worker, f"{worker.part.name} to poll")

    def _start(self, child: _Child) -> None:
        first = child.part not in self.stack.parts
        log = open_log(Path(child.part.log), fresh=first)
        try:
            child.offset = os.fstat(log).st_size
            child.process = subprocess.Popen(
                child.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._die_with_me,  # safe here: the supervisor is one thread (see the docstring)
            )
        finally:
            os.close(log)
        child.since, child.due, child.next_check = time.monotonic(), None, 0.0
        part = child.part
        part.pid, part.started, part.state, part.note = (
            child.process.pid,
            start_ticks(child.process.pid) or 0,
            STARTING,
            "",
        )
        if first:
            self.stack.parts.append(part)
        save_stack(self.stack)

    def _die_with_me(self) -> None:
        """In the child, before it runs its program: SIGTERM when the supervisor dies; exit if it died already."""
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != self.pid:
            os._exit(1)

    def _await_ready(self, child: _Child, what: str) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not child.ready(child.offset):
            assert child.process is not None
            if child.process.poll() is not None:
                raise StackError(f"{child.part.name} exited while waiting for {what}; see {child.part.log}")
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {STARTUP_DEADLINE:g} s waiting for {what}; see {child.part.log}")
            time.sleep(READY_CHECK_EVERY)
        child.part.state = READY
        save_stack(self.stack)

    # -- supervising ------------------------------------------------------------------------

    def _loop(self, wake: int) -> None:
        while not self.stopping:
            with contextlib.suppress(InterruptedError):
                select.select([wake], [], [], self._timeout())
            with contextlib.suppress(BlockingIOError):
                while os.read(wake, 512):
                    pass
            if self.stopping:
                return
            for child in self.children.values():
                self._reap(child)
            for child in self.children.values():
                self._restart_if_due(child)
            for child in self.children.values():
                self._check_ready(child)

    def _timeout(self) -> float:
        """Until the next thing to do: a restart that is due, a look at a starting part; else a safety net."""
        now = time.monotonic()
        times = [child.due for child in self.children.values() if child.due is not None and self._needs_ready(child)]
        if any(child.part.state == STARTING and child.process is not None for child in self.children.values()):
            times.append(now + READY_CHECK_EVERY)
        return max(0.0, min(times, default=now + 5.0) - now)

    def _needs_ready(self, child: _Child) -> bool:
        return all(self.children[name].part.state == READY for name in child.needs)

    def _reap(self, child: _Child) -> None:
        if child.process is None or child.process.poll() is None:
            return
        part, returncode = child.part, child.process.returncode
        up = time.monotonic() - child.since
        child.process = None
        part.last_exit = describe_exit(returncode)
        if up >= STABLE_AFTER:
            child.quick_failures = 0
        child.quick_failures += 1
        delay = restart_delay(child.quick_failures, self.give_up_after)
        if delay is None:
            part.state = FAILED
            part.note = f"gave up after {self.give_up_after} quick failures in a row"
            self._tell(child, f"{part.name} (pid {part.pid}) {part.last_exit} after {up:.1f} s up; {part.note}")
        else:
            child.due = time.monotonic() + delay
            part.state, part.note = RESTARTING, f"restart {part.restarts + 1} in {delay:g} s"
            self._tell(child, f"{part.name} (pid {part.pid}) {part.last_exit} after {up:.1f} s up; {part.note}")
        save_stack(self.stack)

    def _restart_if_due(self, child: _Child) -> None:
        if child.due is None or time.monotonic() < child.due or not self._needs_ready(child):
            return
        child.part.restarts += 1
        self._start(child)
        self._tell(child, f"started {child.part.name} again as pid {child.part.pid} (restart {child.part.restarts})")

    def _check_ready(self, child: _Child) -> None:
        now = time.monotonic()
        if child.process is None or child.part.state != STARTING or now < child.next_check:
            return
        child.next_check = now + READY_CHECK_EVERY
        if child.ready(child.offset):  # said first: whoever reads "ready" in stack.json finds the line
            self._tell(child, f"{child.part.name} (pid {child.part.pid}) ready {now - child.since:.2f} s after start")
            child.part.state = READY
            save_stack(self.stack)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD: the wakeup pipe has woken the loop, which reaps."""


def _stop_now(signum: int, frame: FrameType | None) -> None:
    raise _Stop
