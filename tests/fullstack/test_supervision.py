"""The stack's supervisor: a part killed with kill -9 comes back on its ports, and work goes on through it.

Every wait polls ``stack.json`` (what the supervisor records) or a pid's
liveness under a deadline of ``WAIT``; a restart takes a few seconds at most.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from stigmer_backend.fullstack import stack
from stigmer_backend.fullstack.supervisor import MAX_DELAY, MAX_QUICK_FAILURES, restart_delay

from .conftest import Tier2, pids_alive

WAIT = 120.0
"""A bound for what takes a few seconds on an idle machine (a restart: ~1-3 s); never a sleep."""


def part(tier2: Tier2, name: str) -> dict:
    return next(found for found in tier2.state["parts"] if found["name"] == name)


def until(what: str, holds: Callable[[], bool]) -> float:
    """Polls ``holds`` until it is true; the seconds that took. Fails after ``WAIT``."""
    began = time.monotonic()
    while not holds():
        assert time.monotonic() - began < WAIT, f"not within {WAIT:g} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - began


def kill_and_await_restart(tier2: Tier2, name: str) -> tuple[int, int, float]:
    """kill -9 the part; waits until the supervisor has it ready again. (old pid, new pid, seconds it took)."""
    before = part(tier2, name)
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        now = part(tier2, name)
        return now["pid"] != before["pid"] and now["state"] == "ready" and now["restarts"] == before["restarts"] + 1

    took = until(f"{name} restarted", back)
    return before["pid"], part(tier2, name)["pid"], took


def bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        return False
    return True


def status_lines(tier2: Tier2) -> dict[str, str]:
    shown = tier2.stigmer("local", "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return {line.split()[0]: line for line in shown.stdout.splitlines()}


def executions(tier2: Tier2) -> list[str]:
    return [found["id"] for found in json.loads(tier2.home.run("execution", "list", "-o", "json").stdout)["executions"]]


def execute(tier2: Tier2) -> dict:
    """`stigmer agent execute bot hello`, run by a Temporal worker of the stack; the execution as stored."""
    done = tier2.stigmer("agent", "execute", "bot", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world\n"
    execution_id = re.search(r"(exe_\w+): running as a Temporal workflow", done.stderr).group(1)
    return json.loads(tier2.home.run("execution", "get", execution_id, "-o", "json").stdout)


@pytest.fixture(scope="module")
def seen_pids(tier2: Tier2) -> Iterator[set[int]]:
    """Every pid the stack's processes had in this module, so the last test can check none is left."""
    pids = {found["pid"] for found in tier2.state["parts"]} | {tier2.state["supervisor"]["pid"]}
    yield pids


def test_the_backoff_doubles_from_half_a_second_to_thirty_then_gives_up() -> None:
    delays = [restart_delay(n) for n in range(1, MAX_QUICK_FAILURES + 2)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, MAX_DELAY, MAX_DELAY, None]


def test_the_stacks_ports_are_free_distinct_and_outside_the_range_the_kernel_hands_out() -> None:
    # A port from the kernel's own range can go to any outgoing connection before the part binds it.
    low, high = (int(part) for part in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    for _ in range(20):
        ports = stack.free_ports(5)
        assert len(set(ports)) == 5
        assert not [port for port in ports if low <= port <= high], ports
        for port in ports:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))  # still free


def test_free_ports_skips_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        taken.listen()
        # The busy port is the first one tried: it is passed over for the next.
        monkeypatch.setattr(stack.random, "sample", lambda ports, k: [busy, *[p for p in ports if p != busy][:k]])
        ports = stack.free_ports(2)
    assert busy not in ports and len(set(ports)) == 2


def test_local_start_help_states_the_supervisors_own_default() -> None:
    # The option's default stays None so that `--help` need not import the supervisor; its text must follow it.
    from click.testing import CliRunner

    from stigmer_backend.cli.main import cli

    shown = CliRunner().invoke(cli, ["local", "start", "--help"], terminal_width=200).output
    assert f"[default: {MAX_QUICK_FAILURES}]" in shown


def test_workers_killed_are_restarted_and_the_next_execution_runs_on_a_restarted_one(
    tier2: Tier2, seen_pids: set[int]
) -> None:
    times = []
    new_pids = []
    for name in ("worker-1", "worker-2"):  # both: the execution can only run on a restarted worker
        old, new, took = kill_and_await_restart(tier2, name)
        seen_pids |= {old, new}
        new_pids.append(new)
        times.append(took)
    lines = status_lines(tier2)
    for name in ("worker-1", "worker-2"):
        assert f"pid {part(tier2, name)['pid']} " in lines[name] and " alive " in lines[name]
        assert lines[name].endswith("restarts 1, last exit: killed by SIGKILL"), lines[name]
        assert f"{name} (pid " in (tier2.home.path / "local" / f"{name}.log").read_text()  # the restart, in its log
    assert "restarts" not in lines["temporal"] and "restarts" not in lines["server"]

    shown = execute(tier2)
    assert shown["status"]["phase"] == "EXECUTION_PHASE_SUCCEEDED"
    assert int(shown["status"]["runnerId"].rsplit("-", 1)[1]) in new_pids
    print(f"worker kill -9 -> ready again: {', '.join(f'{took:.2f} s' for took in times)}")


def test_the_server_killed_is_restarted_on_its_endpoint_and_executions_go_on(tier2: Tier2, seen_pids: set[int]) -> None:
    endpoint = tier2.state["server_endpoint"]
    workers = {name: part(tier2, name)["pid"] for name in ("worker-1", "worker-2")}
    old, new, took = kill_and_await_restart(tier2, "server")
    seen_pids |= {old, new}
    assert tier2.state["server_endpoint"] == endpoint
    lines = status_lines(tier2)
    assert f"SERVING      {endpoint}  restarts 1, last exit: killed by SIGKILL" in lines["server"]

    shown = execute(tier2)  # the workers reached the new server on the same endpoint with the same token
    assert shown["status"]["phase"] == "EXECUTION_PHASE_SUCCEEDED"
    assert {name: part(tier2, name)["pid"] for name in workers} == workers  # they reconnected; none was restarted
    print(f"stigmer server kill -9 -> serving again on {endpoint}: {took:.2f} s")


def test_agent_execute_waits_for_a_temporal_being_restarted_creating_nothing_meanwhile(
    tier2: Tier2, seen_pids: set[int]
) -> None:
    supervisor = tier2.state["supervisor"]["pid"]
    temporal = part(tier2, "temporal")
    address = tier2.state["temporal_address"]
    before = executions(tier2)
    # The supervisor is held still (SIGSTOP), so Temporal is surely down when `agent execute` looks.
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(temporal["pid"], signal.SIGKILL)
        until("Temporal gone", lambda: pids_alive([temporal["pid"]]) == [])
        waiting = tier2.home.start("agent", "execute", "bot", "hello")
        said = waiting.wait_for("waiting up to 60 s for it")
        assert "the local stack's temporal is down and being restarted; waiting up to 60 s for it\n" in said
        assert executions(tier2) == before  # nothing is created while it waits
    finally:
        os.kill(supervisor, signal.SIGCONT)
    assert waiting.wait() == 0, waiting.stderr
    assert waiting.stdout == "Hello, world\n"
    assert "running as a Temporal workflow" in waiting.stderr  # through Temporal again, not in-process
    now = part(tier2, "temporal")
    seen_pids.add(now["pid"])
    assert (now["restarts"], now["last_exit"], tier2.state["temporal_address"]) == (1, "killed by SIGKILL", address)
    assert len(executions(tier2)) == len(before) + 1


def test_a_supervisor_killed_takes_its_parts_with_it_and_agent_execute_refuses_in_one_line(
    tier2: Tier2, seen_pids: set[int]
) -> None:
    supervisor = tier2.state["supervisor"]["pid"]
    parts = [found["pid"] for found in tier2.state["parts"]]
    os.kill(supervisor, signal.SIGKILL)
    took = until("every part gone with its supervisor", lambda: pids_alive(parts) == [])
    shown = tier2.stigmer("local", "status")
    assert shown.returncode == 1
    assert re.match(r"supervisor pid \d+ +not running\n", shown.stdout), shown.stdout
    assert shown.stderr == (
        "the supervisor is not running: nothing restarts the parts, which exit with it; "
        "`stigmer local stop`, then `stigmer local start`\n"
    )

    before = executions(tier2)
    refused = tier2.stigmer("agent", "execute", "bot", "hello")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"Error: the local stack's supervisor (pid {supervisor}) is not running, so nothing restarts its parts; "
        "`stigmer local stop`, then `stigmer local start`; nothing was created\n"
    )
    assert executions(tier2) == before

    stopped = tier2.stigmer("local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    started = tier2.stigmer("local", "start", "--workers", "2", "--grace", "2")
    assert started.returncode == 0, started.stderr
    seen_pids |= {found["pid"] for found in tier2.state["parts"]} | {tier2.state["supervisor"]["pid"]}
    print(f"supervisor kill -9: every part gone after {took:.2f} s")


def test_a_part_that_keeps_failing_is_given_up_on_which_status_logs_and_agent_execute_say(
    tier2: Tier2, seen_pids: set[int]
) -> None:
    assert tier2.stigmer("local", "stop").returncode == 0
    started = tier2.stigmer("local", "start", "--workers", "1", "--give-up-after", "2")
    assert started.returncode == 0, started.stderr
    seen_pids |= {found["pid"] for found in tier2.state["parts"]} | {tier2.state["supervisor"]["pid"]}
    server = part(tier2, "server")
    port = int(tier2.state["server_endpoint"].rpartition(":")[2])
    supervisor = tier2.state["supervisor"]["pid"]
    with socket.socket() as taken:  # its port taken: each restart fails at once ("the port is already in use")
        os.kill(supervisor, signal.SIGSTOP)  # held still, so that it restarts nothing before the port is taken
        try:
            os.kill(server["pid"], signal.SIGKILL)
            until("the server gone", lambda: pids_alive([server["pid"]]) == [])
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the killed server's TIME_WAITs
            until("the killed server's port free", lambda: bound(taken, port))  # its socket may close a moment late
            taken.listen()
        finally:
            os.kill(supervisor, signal.SIGCONT)
        until("the supervisor giving up", lambda: part(tier2, "server")["state"] == "failed")
        gave_up = part(tier2, "server")
        seen_pids.add(gave_up["pid"])
        assert (gave_up["restarts"], gave_up["last_exit"]) == (2, "exit 1")
        note = "gave up after 2 quick failures in a row"
        assert gave_up["note"] == note
        shown = tier2.stigmer("local", "status")
        assert shown.returncode == 1
        line = next(line for line in shown.stdout.splitlines() if line.startswith("server "))
        assert line.endswith(
            f"{'gave up':<12} {tier2.state['server_endpoint']}  restarts 2, last exit: exit 1 ({note})"
        )
        log = (tier2.home.path / "local" / "server.log").read_text()
        assert log.count("the port is already in use") == 2 and f"; {note} ---" in log

        before = executions(tier2)
        refused = tier2.stigmer("agent", "execute", "bot", "hello")
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == (
            f"Error: the local stack's server is down: {note} (last: exit 1); "
            f"see {tier2.home.path / 'local' / 'server.log'}; "
            "`stigmer local stop`, then `stigmer local start`; nothing was created\n"
        )
        assert executions(tier2) == before
    stopped = tier2.stigmer("local", "stop")
    assert stopped.returncode == 0 and "did not stop" not in stopped.stderr, stopped.stderr
    assert pids_alive(list(seen_pids)) == []
    assert tier2.stigmer("local", "start", "--workers", "2", "--grace", "2").returncode == 0
    seen_pids |= {found["pid"] for found in tier2.state["parts"]} | {tier2.state["supervisor"]["pid"]}


def test_local_stop_after_restarts_stops_everything_gracefully_and_leaves_no_process(
    tier2: Tier2, seen_pids: set[int]
) -> None:
    old, new, _ = kill_and_await_restart(tier2, "worker-2")
    seen_pids |= {old, new}
    assert execute(tier2)["status"]["phase"] == "EXECUTION_PHASE_SUCCEEDED"
    supervisor, parts = tier2.state["supervisor"]["pid"], tier2.state["parts"]
    stopped = tier2.stigmer("local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "did not stop" not in stopped.stderr, stopped.stderr  # graceful: no part needed SIGKILL
    said = stopped.stderr.splitlines()
    assert said[-1] == "the local stack is stopped"
    assert sorted(said[:-1]) == sorted(f"stopped {found['name']} (pid {found['pid']})" for found in parts)
    assert pids_alive([*seen_pids, supervisor]) == []
    local = tier2.home.path / "local"
    assert list(local.glob("*.pid")) == [] and not (local / "stack.json").exists()
    # Started again for the module's teardown, which stops it.
    assert tier2.stigmer("local", "start", "--workers", "1").returncode == 0
