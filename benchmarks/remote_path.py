"""The remote path, CloudBackend -> ``stigmer server`` -> SQLite, against baselines measured in the same run.

    .venv/bin/python benchmarks/remote_path.py              # full run (~3 min on a busy 2-core box)
    .venv/bin/python benchmarks/remote_path.py --quick      # smaller, for a smoke run
    .venv/bin/python benchmarks/remote_path.py --profile    # where a lifecycle's and a list's time go (cProfile)

``measure(quick=...) -> dict`` is the same measurement as a function (``benchmarks/run`` imports it).

Both servers run in their own subprocess on loopback, the client in this process. Subject and
baseline alternate within every round (the order flips from one round to the next), and each
ratio is computed per round, then summarised as median, min and max over the rounds: a loaded
machine moves both sides of a round together, not the ratio.

- **list-50**: ``ListExecutions`` of a page of 50 executions through CloudBackend (bearer token,
  deadline, retry wrapper, error translation) and ``stigmer server`` (token check, in-flight
  accounting) reading the SQLite file, against the same call on a ``SqliteBackend`` in this
  process on the same file. p50 latency of sequential calls. Goal: remote <= 5x in-process.
- **lifecycle**: create, claim, renew, succeed (``CreateExecution`` and three
  ``UpdateExecutionStatus``) through CloudBackend and the server, against four bare grpclib calls
  (the generated stub on a ``Channel``, a grpclib ``Server`` answering with pre-built responses)
  carrying requests and responses of the same sizes. Lifecycles per second, sequential and with
  16 in flight. Goal: remote >= 0.7 of bare.
- **get**: one ``GetExecution`` (a response of ~200 bytes), the same two ways, as calls per second.

The bare calls use the codec the server and CloudBackend use (``stigmer_backend.backends.codec``), so the
ratios measure what the server and adapter add, not a codec difference; the lifecycle is also run
bare with grpclib's default codec (betterproto2 writing the bytes) to show what the codec saves.
The bare server and channel are otherwise grpclib as it ships, writing each HTTP/2 frame to the
socket as it comes, as ``stigmer server`` does too; CloudBackend sends a request's frames in one
write (``stigmer_backend.backends.batched_writes``). The lifecycle is also run bare with both ends
batching, to show what joining the frames does by itself.

Where a lifecycle's CPU goes is measured in the same rounds: the serving process as the bare
server, as a bare grpclib server with a ``MemoryBackend`` behind it (the contract's rules and
messages, storage in dicts), with a ``SqliteBackend`` behind it (what SQLite storage adds to that),
and as ``stigmer server`` (what its token check, gate and request checks add); and the calling
process with the generated stub and with CloudBackend.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stigmer_backend.backends.batched_writes import BatchedWrites, BatchingChannel
from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.backends.codec import ContractCodec
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import LISTENING_PREFIX, ServerProcess

CONCURRENCY = 16
LIST_GOAL = 5.0
LIFECYCLE_GOAL = 0.7
LEASE = datetime.timedelta(seconds=60)
INPUT = pb.ExecutionInput(message="Summarise the last release notes in three bullet points.")
OUTPUT = pb.ExecutionOutput(text="- Faster wire path\n- Watch cancellation fixed\n- Lists of 50 in a millisecond")

Call = Callable[[], Awaitable[Any]]


# -- the lifecycle, as requests -------------------------------------------------------------------


def lifecycle_requests(request_id: str, execution_id: str) -> list[tuple[str, Any]]:
    """Create, claim, renew and succeed, as (RPC method name, request); the updates need ``execution_id``."""
    runner = "runner-bench-1"

    def update(version: int, phase: pb.ExecutionPhase, **fields: Any) -> pb.UpdateExecutionStatusRequest:
        return pb.UpdateExecutionStatusRequest(
            execution_id=execution_id, expected_version=version, phase=phase, runner_id=runner, **fields
        )

    return [
        (
            "create_execution",
            pb.CreateExecutionRequest(
                request_id=request_id, agent_instance=pb.AgentInstanceRef(name="bench"), input=INPUT
            ),
        ),
        ("update_execution_status", update(1, pb.ExecutionPhase.RUNNING, lease_duration=LEASE, message="claimed")),
        ("update_execution_status", update(2, pb.ExecutionPhase.RUNNING, lease_duration=LEASE, message="step 1")),
        ("update_execution_status", update(3, pb.ExecutionPhase.SUCCEEDED, output=OUTPUT)),
    ]


async def run_lifecycle(backend: Any, request_id: str) -> list[Any]:
    """One lifecycle on ``backend`` (any ``BackendService`` implementation); the four responses."""
    (_, create), *updates = lifecycle_requests(request_id, "")
    created = await backend.create_execution(create)
    responses = [created]
    for _, request in updates:
        request.execution_id = created.execution.id
        responses.append(await backend.update_execution_status(request))
    return responses


# -- the bare server (this script, run with --bare-server RESPONSES_FILE [--default-codec]) --------


class ConstantBackend(pb.BackendServiceBase):
    """Answers with pre-built responses: grpclib and the codec, nothing else.

    ``UpdateExecutionStatus`` answers by ``expected_version`` (1 claim, 2 renew, 3 succeed), so
    each of the lifecycle's calls gets a response of the size the real server sends.
    """

    def __init__(self, responses: dict[str, bytes]) -> None:
        self._get = pb.GetExecutionResponse.parse(responses["get"])
        self._list = pb.ListExecutionsResponse.parse(responses["list"])
        self._create = pb.CreateExecutionResponse.parse(responses["create"])
        self._updates = {
            version: pb.UpdateExecutionStatusResponse.parse(responses[name])
            for version, name in ((1, "claim"), (2, "renew"), (3, "succeed"))
        }

    async def get_execution(self, message: pb.GetExecutionRequest) -> pb.GetExecutionResponse:
        return self._get

    async def list_executions(self, message: pb.ListExecutionsRequest) -> pb.ListExecutionsResponse:
        return self._list

    async def create_execution(self, message: pb.CreateExecutionRequest) -> pb.CreateExecutionResponse:
        return self._create

    async def update_execution_status(
        self, message: pb.UpdateExecutionStatusRequest
    ) -> pb.UpdateExecutionStatusResponse:
        return self._updates[message.expected_version]


async def bare_server(
    responses_file: str, default_codec: bool, batched: bool, sqlite: str | None = None, memory: bool = False
) -> None:
    import signal

    from grpclib.protocol import H2Protocol
    from grpclib.server import Server

    class BatchingServer(Server):
        """grpclib's server writing through ``BatchedWrites``, as CloudBackend's channel does."""

        def _protocol_factory(self) -> H2Protocol:
            protocol = super()._protocol_factory()
            made = protocol.connection_made
            protocol.connection_made = lambda transport: made(BatchedWrites(transport))  # type: ignore[method-assign]
            return protocol

    from stigmer_backend.server.startup import listening_socket

    responses = {name: bytes.fromhex(value) for name, value in json.loads(Path(responses_file).read_text()).items()}
    if sqlite is not None:  # the storage without stigmer server's own layers (token, gate, request checks)
        from stigmer_backend.backends.sqlite import SqliteBackend

        backend: pb.BackendServiceBase = SqliteBackend(sqlite)
    elif memory:  # the contract's rules and messages, without storage
        from stigmer_backend.backends.memory import MemoryBackend

        backend = MemoryBackend()
    else:
        backend = ConstantBackend(responses)
    server = (BatchingServer if batched else Server)([backend], codec=None if default_codec else ContractCodec())
    sock = listening_socket("127.0.0.1", 0)  # the same socket setup as stigmer server (TCP_NODELAY)
    await server.start(sock=sock)
    print(f"{LISTENING_PREFIX}127.0.0.1:{sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


class BareServer:
    """A bare grpclib server subprocess and a generated stub on a channel to it.

    It answers with the pre-built responses, or, given ``sqlite``, serves a ``SqliteBackend`` on
    that file: the storage's cost apart from what ``stigmer server`` adds around it; or, with
    ``memory``, a ``MemoryBackend``: the contract's rules without storage.
    """

    def __init__(
        self,
        responses_file: Path,
        token: str,
        *,
        default_codec: bool,
        batched: bool = False,
        sqlite: Path | None = None,
        memory: bool = False,
    ) -> None:
        from grpclib.client import Channel

        command = [sys.executable, __file__, "--bare-server", str(responses_file)]
        command += ["--default-codec"] if default_codec else []
        command += ["--batched"] if batched else []
        command += ["--sqlite", str(sqlite)] if sqlite is not None else []
        command += ["--memory"] if memory else []
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith(LISTENING_PREFIX):
            self.close()
            raise RuntimeError(f"the bare server did not start: {line!r}")
        host, _, port = line[len(LISTENING_PREFIX) :].rpartition(":")
        self.channel = (BatchingChannel if batched else Channel)(
            host, int(port), codec=None if default_codec else ContractCodec()
        )
        # The same header CloudBackend sends (the bare server does not check it) and the same deadline.
        self.stub = pb.BackendServiceStub(self.channel, metadata=[("authorization", f"Bearer {token}")], timeout=30.0)

    def call(self, method: str, request: Any) -> Awaitable[Any]:
        return getattr(self.stub, method)(request)

    async def lifecycle(self, execution_id: str) -> None:
        """The four calls of a lifecycle, their requests built for each, as ``run_lifecycle`` builds them."""
        for method, request in lifecycle_requests("bench-00000", execution_id):
            await self.call(method, request)

    def close(self) -> None:
        if hasattr(self, "channel"):
            self.channel.close()
        self.process.terminate()
        self.process.wait()


# -- measuring ------------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def timed(call: Call, count: int, concurrency: int, server_pid: int | None) -> dict[str, float]:
    """Runs ``count`` calls of ``call`` with ``concurrency`` in flight.

    Returns ``per_s`` (calls per second), ``p50_ms`` (median latency of one call) and ``cpu_ms``:
    the CPU time per call of this process plus the server's (``server_pid``; ``None`` for a call
    served in this process), also apart (``client_cpu_ms``, ``server_cpu_ms``). CPU time is the
    work a call costs, which the machine's other load does not inflate the way it inflates rates
    and latencies.
    """
    per_worker = max(1, count // concurrency)
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    def server_cpu() -> float:
        return process_cpu_seconds(server_pid) if server_pid else 0.0

    client_before, server_before, started = time.process_time(), server_cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    client, server = time.process_time() - client_before, server_cpu() - server_before
    calls = per_worker * concurrency
    return {
        "per_s": calls / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "cpu_ms": (client + server) / calls * 1000,
        "client_cpu_ms": client / calls * 1000,
        "server_cpu_ms": server / calls * 1000,
    }


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (``/proc/PID/stat``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def paired_rounds(
    sides: dict[str, Callable[[], Awaitable[dict[str, float]]]], rounds: int
) -> dict[str, list[dict[str, float]]]:
    """``rounds`` runs of every side (the first is the subject), alternating, the order flipped every round."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for number in range(rounds):
        for name in list(sides) if number % 2 == 0 else list(reversed(sides)):
            results[name].append(await sides[name]())
    return results


async def warmed_rounds(
    sides: dict[str, tuple[Call, int | None]], calls: int, concurrency: int, rounds: int
) -> dict[str, list[dict[str, float]]]:
    """``paired_rounds`` of ``timed(call, calls, concurrency, pid)`` for each side's ``(call, pid)`` (``pid``:
    the serving process), after a few calls of each to warm connections and code paths."""
    for call, _ in sides.values():
        await timed(call, 2 * concurrency, concurrency, None)
    return await paired_rounds(
        {name: lambda call=call, pid=pid: timed(call, calls, concurrency, pid) for name, (call, pid) in sides.items()},
        rounds,
    )


def summary(results: dict[str, list[dict[str, float]]], figures: tuple[str, ...]) -> dict[str, Any]:
    """Each side's ``figures`` (every round's value and their spread), and the spread of the per-round
    ratios of the subject (the first side) to each other side."""
    subject, *others = results
    out: dict[str, Any] = {}
    for figure in figures:
        out[figure] = {
            name: {**spread([one[figure] for one in rounds]), "rounds": [one[figure] for one in rounds]}
            for name, rounds in results.items()
        }
        out[figure]["ratios"] = {
            other: spread(
                [mine[figure] / theirs[figure] for mine, theirs in zip(results[subject], results[other], strict=True)]
            )
            for other in others
        }
    return out


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def server_files(work: Path, token: str) -> tuple[Path, dict[str, str]]:
    """In ``work``: a private ``STIGMER_HOME`` and ``token`` in a 0600 file, as ``stigmer server`` wants them;
    the token file, and this process's environment for the server (no other ``STIGMER_`` setting)."""
    (work / "home").mkdir(mode=0o700)
    token_file = work / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(work / "home")
    return token_file, env


async def _fill(remote: Any, count: int) -> list[Any]:
    """An agent and ``count`` finished executions (the list's page); the responses of the last lifecycle."""
    await remote.apply_agent_instance(
        pb.ApplyAgentInstanceRequest(
            name="bench",
            spec=pb.AgentInstanceSpec(
                instructions="Answer briefly.", model=pb.ModelConfig(provider="ollama", model="llama3")
            ),
        )
    )
    for number in range(count):
        responses = await run_lifecycle(remote, f"fill-{number}")
    return responses


async def measure_async(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Runs every measurement; a dict of figures (rates per second, latencies in ms, ratios as spreads)."""
    from stigmer_backend.backends.sqlite import SqliteBackend

    rounds = rounds or (3 if quick else 9)
    list_calls, get_calls, lifecycles = (40, 300, 96) if quick else (100, 800, 240)
    token = secrets.token_hex(24)
    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "rounds": rounds,
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        token_file, env = server_files(work, token)
        database = work / "bench.db"
        server = ServerProcess.start(["--db", str(database), "--token-file", str(token_file)], env=env)
        remote = CloudBackend(server.endpoint, token=token)
        local = SqliteBackend(database)
        bare = bare_default = bare_batched = bare_memory = bare_sqlite = None
        try:
            created, claimed, renewed, succeeded = await _fill(remote, 60)
            get_request = pb.GetExecutionRequest(execution_id=succeeded.execution.id)
            list_request = pb.ListExecutionsRequest(page_size=50)
            listed = await remote.list_executions(list_request)
            assert len(listed.executions) == 50 and listed == await local.list_executions(list_request)
            wire = {
                "get": bytes(await remote.get_execution(get_request)),
                "list": bytes(listed),
                "create": bytes(created),
                "claim": bytes(claimed),
                "renew": bytes(renewed),
                "succeed": bytes(succeeded),
            }
            figures["sizes"] = {name: len(data) for name, data in wire.items()}
            responses_file = work / "responses.json"
            responses_file.write_text(json.dumps({name: data.hex() for name, data in wire.items()}))
            bare = BareServer(responses_file, token, default_codec=False)
            bare_default = BareServer(responses_file, token, default_codec=True)
            bare_batched = BareServer(responses_file, token, default_codec=False, batched=True)
            bare_memory = BareServer(responses_file, token, default_codec=False, memory=True)
            bare_sqlite = BareServer(responses_file, token, default_codec=False, sqlite=work / "bare.db")
            for backed in (bare_memory, bare_sqlite):
                await _fill(backed.stub, 1)
            # The bare lifecycle's requests have the sizes of the remote ones (ids of the same length).
            bare_execution = created.execution.id

            serial = iter(range(10**9))

            async def remote_lifecycle() -> None:
                await run_lifecycle(remote, f"bench-{next(serial):05d}")

            def list_remote() -> Awaitable[Any]:
                return remote.list_executions(list_request)

            def list_local() -> Awaitable[Any]:
                return local.list_executions(list_request)

            def list_bare() -> Awaitable[Any]:
                return bare.call("list_executions", list_request)

            for call in (list_remote, list_local, list_bare):
                await timed(call, 20, 1, None)  # warm connections, caches and code paths
            listing = await paired_rounds(
                {
                    "remote": lambda: timed(list_remote, list_calls, 1, server.pid),
                    "in_process": lambda: timed(list_local, list_calls, 1, None),
                    "bare": lambda: timed(list_bare, list_calls, 1, bare.process.pid),
                },
                rounds,
            )
            figures["list50"] = summary(listing, ("p50_ms", "cpu_ms"))

            figures["lifecycle"] = {}
            figures["get"] = {}
            for concurrency in (1, CONCURRENCY):
                sides = {
                    "remote": (remote_lifecycle, server.pid),
                    "bare": (lambda: bare.lifecycle(bare_execution), bare.process.pid),
                    "bare_default_codec": (lambda: bare_default.lifecycle(bare_execution), bare_default.process.pid),
                    "bare_batched": (lambda: bare_batched.lifecycle(bare_execution), bare_batched.process.pid),
                    "bare_memory": (
                        lambda: run_lifecycle(bare_memory.stub, f"memory-{next(serial):05d}"),
                        bare_memory.process.pid,
                    ),
                    "bare_sqlite": (
                        lambda: run_lifecycle(bare_sqlite.stub, f"bare-{next(serial):05d}"),
                        bare_sqlite.process.pid,
                    ),
                }
                cycles = await warmed_rounds(sides, lifecycles, concurrency, rounds)
                figures["lifecycle"][concurrency] = summary(
                    cycles, ("per_s", "cpu_ms", "server_cpu_ms", "client_cpu_ms")
                )
                gets = await paired_rounds(
                    {
                        "remote": lambda c=concurrency: timed(
                            lambda: remote.get_execution(get_request), get_calls, c, server.pid
                        ),
                        "bare": lambda c=concurrency: timed(
                            lambda: bare.call("get_execution", get_request), get_calls, c, bare.process.pid
                        ),
                    },
                    rounds,
                )
                figures["get"][concurrency] = summary(gets, ("per_s", "cpu_ms"))
            figures["peak_rss_mib"] = {"server": peak_rss_mib(server.pid), "bare": peak_rss_mib(bare.process.pid)}
        finally:
            await remote.aclose()
            await local.aclose()
            for side in (bare, bare_default, bare_batched, bare_memory, bare_sqlite):
                if side is not None:
                    side.close()
            server.close()
    return figures


def measure(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """``measure_async`` in a fresh event loop."""
    return asyncio.run(measure_async(quick, rounds))


# -- printing -------------------------------------------------------------------------------------


def _s(values: dict[str, float], fmt: str) -> str:
    return f"{values['median']:{fmt}} [{values['min']:{fmt}}..{values['max']:{fmt}}]"


def report(figures: dict[str, Any]) -> str:
    """The figures as text: medians over rounds with [min..max]."""
    lines = [
        f"python {figures['python']}, {figures['machine']}, {figures['cpus']} CPUs; loopback, h2c; "
        f"{figures['rounds']} rounds; each figure: median [min..max] over rounds",
        "CPU = CPU time of the client process plus the serving process, per call or lifecycle",
        "response bytes: " + ", ".join(f"{name} {size}" for name, size in figures["sizes"].items()),
        "",
        "ListExecutions, page of 50, sequential calls (ms per call):",
    ]
    listing = figures["list50"]
    for figure, label in (("p50_ms", "p50 latency"), ("cpu_ms", "CPU")):
        row = listing[figure]
        ratio = row["ratios"]["in_process"]
        verdict = "met" if ratio["median"] <= LIST_GOAL else "NOT met"
        lines += [
            f"  {label:<11}  remote {_s(row['remote'], '.2f')}  in-process {_s(row['in_process'], '.2f')}"
            f"  bare grpclib {_s(row['bare'], '.2f')}",
            f"  list-50 {label} remote/in-process {_s(ratio, '.2f')}  goal <= {LIST_GOAL:.1f} {verdict}",
        ]
    lines += ["", "Lifecycle (create, claim, renew, succeed) vs four bare grpclib calls of the same sizes:"]
    for concurrency, row in figures["lifecycle"].items():
        rates, cpu = row["per_s"], row["cpu_ms"]
        ratio = rates["ratios"]["bare"]
        verdict = "met" if ratio["median"] >= LIFECYCLE_GOAL else "NOT met"
        lines += [
            f"  {concurrency:>2} in flight, lifecycles/s: remote {_s(rates['remote'], ',.0f')}"
            f"  bare {_s(rates['bare'], ',.0f')}"
            f"  bare with betterproto2 codec {_s(rates['bare_default_codec'], ',.0f')}"
            f"  bare, both ends batching writes {_s(rates['bare_batched'], ',.0f')}",
            f"  {'':>2}   CPU ms per lifecycle: remote {_s(cpu['remote'], '.2f')}  bare {_s(cpu['bare'], '.2f')}"
            f"  bare with betterproto2 codec {_s(cpu['bare_default_codec'], '.2f')}"
            f"  bare, both ends batching writes {_s(cpu['bare_batched'], '.2f')}",
            f"  lifecycle {concurrency:>2} remote/bare rate {_s(ratio, '.3f')}  goal >= {LIFECYCLE_GOAL:.2f} {verdict};"
            f"  CPU remote/bare {_s(cpu['ratios']['bare'], '.2f')}",
        ]
        lines += _where_it_goes(row)
    lines += ["", "GetExecution:"]
    for concurrency, row in figures["get"].items():
        rates, cpu = row["per_s"], row["cpu_ms"]
        lines += [
            f"  {concurrency:>2} in flight, calls/s: remote {_s(rates['remote'], ',.0f')}"
            f"  bare {_s(rates['bare'], ',.0f')}"
            f"  get {concurrency:>2} remote/bare rate {_s(rates['ratios']['bare'], '.3f')}"
            f"  CPU {_s(cpu['ratios']['bare'], '.2f')}",
        ]
    rss = figures["peak_rss_mib"]
    lines += [
        "",
        f"peak RSS (VmHWM) after the load: stigmer server {rss['server']:.1f} MiB, bare {rss['bare']:.1f} MiB",
    ]
    return "\n".join(lines)


def _where_it_goes(row: dict[str, Any]) -> list[str]:
    """The serving process's CPU per lifecycle, layer by layer, and the client's: medians over rounds."""
    server = {name: values["median"] for name, values in row["server_cpu_ms"].items() if name != "ratios"}
    client = {name: values["median"] for name, values in row["client_cpu_ms"].items() if name != "ratios"}
    bare, rules, storage, served = server["bare"], server["bare_memory"], server["bare_sqlite"], server["remote"]
    return [
        f"       where it goes, CPU ms per lifecycle: serving process: grpclib and codec (bare) {bare:.2f},"
        f" with MemoryBackend behind it {rules:.2f} ({rules - bare:+.2f}: contract rules and messages),"
        f" with SqliteBackend {storage:.2f} ({storage - rules:+.2f}: SQLite storage),"
        f" stigmer server {served:.2f} ({served - storage:+.2f}: token, gate, request checks);"
        f" calling process: generated stub {client['bare']:.2f}, CloudBackend {client['remote']:.2f}",
    ]


# -- profiling ------------------------------------------------------------------------------------


async def _profiled(scenario: str, count: int) -> Any:
    """``count`` lifecycles or list-50 calls (``scenario``) with client and server in this process, under cProfile."""
    import cProfile

    from stigmer_backend.backends.sqlite import SqliteBackend
    from stigmer_backend.server.backend_server import BackendServer
    from stigmer_backend.server.startup import listening_socket

    token = secrets.token_hex(24)
    with tempfile.TemporaryDirectory() as scratch:
        backend = SqliteBackend(Path(scratch) / "bench.db")
        server = BackendServer(backend, token=token)
        await server.start(listening_socket("127.0.0.1", 0))
        remote = CloudBackend(f"127.0.0.1:{server.address[1]}", token=token)
        try:
            await _fill(remote, 60 if scenario == "list" else 20)
            list_request = pb.ListExecutionsRequest(page_size=50)
            profile = cProfile.Profile()
            profile.enable()
            for number in range(count):
                if scenario == "list":
                    await remote.list_executions(list_request)
                else:
                    await run_lifecycle(remote, f"profiled-{number:05d}")
            profile.disable()
        finally:
            await remote.aclose()
            await server.shutdown(1)
            await backend.aclose()
    return profile


_AREAS = (
    (
        "codec (stigmer_backend.backends.codec, upb)",
        ("/backends/codec/", "<stigmer_backend.backends.codec ", "google/protobuf", "google._upb"),
    ),
    ("SQLite backend and contract rules", ("/backends/sqlite/", "/backends/rules/", "sqlite3", "sqlite_utils")),
    ("betterproto2 (message init, defaults)", ("betterproto2", "/gen/")),
    ("CloudBackend adapter", ("/backends/cloud/",)),
    ("write batching (backends/batched_writes)", ("/backends/batched_writes",)),
    ("server gate and handlers", ("/server/",)),
    ("grpclib", ("grpclib",)),
    ("h2 / hpack / hyperframe (HTTP/2)", ("/h2/", "/hpack/", "/hyperframe/")),
    ("asyncio event loop and sockets", ("asyncio/", "selectors", "_socket", "select.epoll")),
)


def _area(function: tuple[str, int, str]) -> str:
    filename, line, name = function
    where = f"{filename}:{line}({name})"
    return next((area for area, marks in _AREAS if any(mark in where for mark in marks)), "other")


_NOT_OURS = ("grpclib", "h2 / hpack / hyperframe (HTTP/2)", "asyncio event loop and sockets")


def profile_report(count: int = 300, scenario: str = "lifecycle") -> str:
    """Where ``count`` lifecycles or list-50 calls (client and server in one process) spend their time.

    Time spent in the standard library or a builtin is counted for the area that called it.
    """
    import pstats

    profile = asyncio.run(_profiled(scenario, count))
    stats = pstats.Stats(profile).stats  # function -> (calls, primitive calls, own time, cumulative, callers)
    total = sum(row[2] for row in stats.values())
    by_area = dict.fromkeys([area for area, _ in _AREAS] + ["other"], 0.0)
    for function, (_, _, own, _, callers) in stats.items():
        area = _area(function)
        if area != "other" or not callers:
            by_area[area] += own
            continue
        called_total = sum(row[2] for row in callers.values()) or 1.0
        for caller, row in callers.items():
            by_area[_area(caller)] += own * row[2] / called_total
    what = "lifecycles" if scenario == "lifecycle" else "ListExecutions calls (page of 50)"
    lines = [f"{count} {what}, client and server in one process: {total:.2f} s of profiled time (own time)"]
    lines += [f"  {share / total:6.1%}  {area}" for area, share in sorted(by_area.items(), key=lambda kv: -kv[1])]
    not_ours = sum(by_area[area] for area in _NOT_OURS)
    lines.append(f"  {not_ours / total:6.1%}  of it not ours: {', '.join(_NOT_OURS)}")
    lines += ["", "top functions by own time:"]
    top = sorted(stats.items(), key=lambda item: -item[1][2])[:15]
    for (filename, line, name), row in top:
        where = f"{filename.split('site-packages/')[-1].split('/lib/python3')[-1]}:{line}({name})"
        lines.append(f"  {row[2] / total:6.1%}  {where if filename != '~' else name}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 9, 3 with --quick)")
    parser.add_argument("--profile", action="store_true", help="profile lifecycles and lists instead of measuring")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--bare-server", metavar="RESPONSES_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--default-codec", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sqlite", help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_server:
        asyncio.run(
            bare_server(
                arguments.bare_server, arguments.default_codec, arguments.batched, arguments.sqlite, arguments.memory
            )
        )
    elif arguments.profile:
        print(profile_report(100 if arguments.quick else 300, "lifecycle"))
        print()
        print(profile_report(100 if arguments.quick else 300, "list"))
    else:
        result = measure(arguments.quick, arguments.rounds)
        print(json.dumps(result, indent=2) if arguments.json else report(result))
