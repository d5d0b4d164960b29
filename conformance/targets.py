"""What the suite runs against, and how to reach (and restart) it.

``--stigmer-target`` takes one of:

- ``sqlite`` — Stigmer's SQLite backend on a fresh temporary database (restartable);
- ``KIND://…`` — the storage backend registered for that URL scheme in
  ``backends/registry.py`` (``postgresql://…``: Stigmer's PostgreSQL backend), on
  that (empty) storage (restartable);
- ``module:factory`` — an in-process Python backend: ``factory()`` returns a
  ``BackendServiceBase`` subclass instance (``stigmer_backend.backends.memory:MemoryBackend``);
- ``host:port`` — any gRPC endpoint, reached with the generated stub (or with
  Stigmer's cloud adapter, ``--stigmer-adapter cloud``); TLS with
  ``--stigmer-ca`` or ``--stigmer-tls``, a bearer token from ``--stigmer-token-file``
  or ``STIGMER_CONFORMANCE_TOKEN``;
- ``--stigmer-server-command CMD`` instead of a target: a command that starts a
  backend server and prints ``host:port`` on its standard output; the suite
  stops and restarts it for durability tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import shlex
import signal
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from stigmer_backend.backends import wire
from stigmer_backend.backends.registry import open_storage, storage_kind

if TYPE_CHECKING:
    from stigmer_backend.backends.base import Backend

    from .client import BackendUnderTest

__all__ = ["Target", "TargetError", "open_target"]

_ADDRESS = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})")
START_TIMEOUT = 30.0  # seconds for a server command to print its address


class TargetError(Exception):
    """The target cannot be reached or started; the message says why."""


@dataclass
class Target:
    """An opened target. ``backend`` has the generated method signatures."""

    description: str
    backend: BackendUnderTest
    restartable: bool = False
    _restart: Callable[[], Awaitable[BackendUnderTest]] | None = None
    _close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _caller: Callable[[str | None], BackendUnderTest] | None = None

    def as_caller(self, token: str | None) -> BackendUnderTest | None:
        """The same endpoint reached with another bearer token (None: no token), for authentication tests.

        None for an in-process target, which has no caller credentials to check.
        """
        return None if self._caller is None else self._caller(token)

    async def restart(self) -> None:
        """Stops the backend and starts it again on the same storage; rebinds ``backend``."""
        if not self.restartable or self._restart is None:
            raise TargetError(f"{self.description} cannot be restarted")
        self.backend = await self._restart()

    async def close(self) -> None:
        while self._close:
            await self._close.pop()()


@dataclass(frozen=True)
class Options:
    target: str | None
    server_command: str | None = None
    adapter: str = "stub"
    ca_file: str | None = None
    tls: bool = False
    token: str | None = None


async def open_target(options: Options) -> Target:
    if options.server_command:
        return await _open_command(options)
    if not options.target:
        raise TargetError("no target: give --stigmer-target or --stigmer-server-command")
    if options.target == "sqlite":
        return await _open_storage("sqlite", None)
    if "://" in options.target:
        return await _open_storage(storage_kind(options.target), options.target)
    if _ADDRESS.fullmatch(options.target):
        closers: list[Callable[[], Awaitable[None]]] = []
        caller = _connect(options.target, options, closers)
        return Target(description=options.target, backend=caller(options.token), _close=closers, _caller=caller)
    if ":" in options.target:
        return _open_factory(options.target)
    raise TargetError(
        f"cannot understand target {options.target!r}: expected sqlite, KIND://..., module:factory or host:port"
    )


async def _open_storage(kind: str, url: str | None) -> Target:
    """The registered storage backend of ``kind`` at ``url``; ``None``: a fresh file in a temporary directory."""
    from grpclib import GRPCError

    from stigmer_backend.backends.encryption import MasterKeySource

    directory = tempfile.TemporaryDirectory(prefix="stigmer-conformance-")
    where = url or str(Path(directory.name) / "conformance.db")

    async def start() -> Backend:
        # A throwaway key in the throwaway directory: never the user's keychain or ~/.stigmer.
        key = MasterKeySource(directory.name, environ={}, keychain=None)
        return await open_storage(kind, where, master_key=key).__aenter__()

    try:
        backend = await start()
    except GRPCError as error:
        directory.cleanup()
        raise TargetError(error.message) from None
    # Where it runs, as the backend names it: a URL without its password, or the file.
    shown = getattr(backend, "where", None) or getattr(backend, "path", where)
    return _restartable(f"{kind} ({shown})", backend, start, directory)


def _restartable(
    description: str,
    backend: Backend,
    start: Callable[[], Awaitable[Backend]],
    directory: tempfile.TemporaryDirectory[str],
) -> Target:
    """A target whose ``start()`` reopens the same storage, kept in ``directory`` until it is closed."""
    target = Target(description=description, backend=backend, restartable=True)
    running = backend  # what `target.backend` is: only `restart` rebinds it

    async def restart() -> Backend:
        nonlocal running
        await running.aclose()
        running = await start()
        return running

    async def close() -> None:
        await running.aclose()
        directory.cleanup()

    target._restart, target._close = restart, [close]
    return target


def _open_factory(spec: str) -> Target:
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise TargetError(f"cannot load backend factory {spec!r}: {error}") from None
    backend = factory()
    target = Target(description=spec, backend=backend)
    if hasattr(backend, "aclose"):
        target._close.append(backend.aclose)
    return target


def _ssl_context(options: Options) -> ssl.SSLContext | None:
    if not (options.ca_file or options.tls):
        return None
    from grpclib import GRPCError

    try:
        return wire.client_ssl_context(options.ca_file)
    except GRPCError as error:
        raise TargetError(error.message) from None


def _connect(
    address: str, options: Options, closers: list[Callable[[], Awaitable[None]]]
) -> Callable[[str | None], BackendUnderTest]:
    """Opens the endpoint for a bearer token (None: no token); what it opens goes on ``closers``."""
    try:
        host, port = wire.parse_endpoint(address)
    except ValueError as error:
        raise TargetError(str(error)) from None
    if options.adapter == "cloud":
        from stigmer_backend.backends.cloud import CloudBackend

        def cloud(token: str | None) -> BackendUnderTest:
            backend = CloudBackend(
                wire.format_endpoint(host, port), token=token, ca_file=options.ca_file, tls=options.tls
            )
            closers.append(backend.aclose)
            return backend

        return cloud
    from grpclib.client import Channel

    from stigmer_backend.gen.stigmer.backend import v1 as pb

    channel = Channel(host, port, ssl=_ssl_context(options))

    async def close_channel() -> None:
        channel.close()

    closers.append(close_channel)

    def stub(token: str | None) -> BackendUnderTest:
        return pb.BackendServiceStub(channel, metadata={"authorization": wire.authorization(token)} if token else None)

    return stub


async def _open_command(options: Options) -> Target:
    command = shlex.split(options.server_command or "")
    process: subprocess.Popen[str] | None = None
    stderr = tempfile.TemporaryFile(mode="w+")  # kept for the error message if the server dies

    async def start() -> Callable[[str | None], BackendUnderTest]:
        nonlocal process
        stderr.seek(0)
        stderr.truncate()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            address = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, _read_address, process), START_TIMEOUT
            )
        except (TimeoutError, TargetError) as error:
            process.kill()
            process.wait()
            stderr.seek(0)
            detail = stderr.read().strip().splitlines()[-1:] or ["no output"]
            reason = "printed no host:port in time" if isinstance(error, TimeoutError) else str(error)
            raise TargetError(f"the server command {reason}: {detail[0]}") from None
        # Keep reading what the server prints, so a full pipe never blocks it.
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
        return _connect(address, options, closers)

    async def stop() -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def restart() -> BackendUnderTest:
        await stop()
        reconnect = await start()
        target._caller = reconnect
        return reconnect(options.token)

    async def close() -> None:
        await stop()
        stderr.close()

    closers: list[Callable[[], Awaitable[None]]] = [close]
    caller = await start()
    target = Target(
        description=f"command: {options.server_command}",
        backend=caller(options.token),
        restartable=True,
        _restart=restart,
        _close=closers,
        _caller=caller,
    )
    return target


def _read_address(process: subprocess.Popen[str]) -> str:
    """The first ``host:port`` the server prints on stdout."""
    assert process.stdout is not None
    for line in process.stdout:
        match = _ADDRESS.search(line)
        if match:
            return match.group(0)
    raise TargetError("exited before printing its address")


def _drain(stream: IO[str]) -> None:
    with contextlib.suppress(Exception):
        for _ in stream:
            pass
