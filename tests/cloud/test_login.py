"""``stigmer login``, ``logout`` and ``context``, run as a user would: the real command, a real server."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.backend_server import BackendServer
from stigmer_backend.server.launch import ServerProcess
from stigmer_backend.server.startup import listening_socket
from tests.certificates import make_tls_files

STIGMER = str(Path(sys.executable).with_name("stigmer"))


@pytest.fixture
def cli(server_env):
    """Runs ``stigmer ARGS`` with ``stdin`` piped in, in the test's own ``STIGMER_HOME`` without a keychain."""

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([STIGMER, *args], input=stdin, env=server_env, capture_output=True, text=True, timeout=60)

    return run


async def acli(env, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``cli`` without blocking the event loop, for servers running in this process."""
    process = await asyncio.create_subprocess_exec(
        STIGMER, *args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    return process.returncode, out.decode(), err.decode()


def context_json(cli) -> dict:
    result = cli("context", "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_nothing_saved(home: Path) -> None:
    assert not (home / "config.json").exists()
    assert not (home / "token").exists()


def test_login_verifies_saves_the_token_privately_and_logout_forgets_it(cli, served, token, home):
    result = cli("login", "--endpoint", served.endpoint, "--plaintext", stdin=token + "\n")
    assert result.returncode == 0, result.stderr
    assert f"logged in to {served.endpoint}" in result.stderr
    assert token not in result.stdout + result.stderr

    token_file = home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert json.loads(token_file.read_text()) == {"endpoint": served.endpoint, "token": token}
    config = (home / "config.json").read_text()
    assert token not in config
    assert json.loads(config) == {
        "kind": "cloud",
        "url": "",
        "endpoint": served.endpoint,
        "ca_file": "",
        "plaintext": True,
    }

    shown = context_json(cli)
    assert shown["mode"] == "remote"
    assert shown["where"] == f"{served.endpoint} (plaintext)"
    assert shown["contractVersion"] == "1.0"
    assert "CAPABILITY_AUTHENTICATION" in shown["capabilities"]
    table = cli("context")
    assert table.returncode == 0 and "remote" in table.stdout and served.endpoint in table.stdout

    out = cli("logout")
    assert out.returncode == 0, out.stderr
    assert not token_file.exists()
    shown = context_json(cli)
    assert (shown["mode"], shown["where"]) == ("local", str(home / "local.db"))
    assert shown["backendKind"] == "sqlite"


def test_context_says_where_even_when_the_remote_does_not_answer(cli, served, token):
    assert cli("login", "--endpoint", served.endpoint, "--plaintext", stdin=token).returncode == 0
    served.stop()
    result = cli("context", "-o", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["where"] == f"{served.endpoint} (plaintext)"
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr


def test_login_to_an_endpoint_where_nothing_listens_saves_nothing(cli, token, home):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    result = cli("login", "--endpoint", f"127.0.0.1:{port}", "--plaintext", stdin=token)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"Error: UNAVAILABLE: 127.0.0.1:{port} unreachable: connection refused (is the server running?)"
    )
    assert_nothing_saved(home)


def test_login_with_a_wrong_token_saves_nothing_and_keeps_the_previous_login(
    cli, served, token, home, tmp_path, server_env
):
    assert cli("login", "--endpoint", served.endpoint, "--plaintext", stdin=token).returncode == 0
    before = ((home / "config.json").read_text(), (home / "token").read_text())
    other_token = tmp_path / "other-token"
    other_token.write_text("another-token-for-the-other-server")
    other_token.chmod(0o600)
    with ServerProcess.start(
        ["--db", str(tmp_path / "other.db"), "--token-file", str(other_token)], env=server_env
    ) as other:
        result = cli("login", "--endpoint", other.endpoint, "--plaintext", stdin="not-the-right-token")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: UNAUTHENTICATED: invalid bearer token"
    assert ((home / "config.json").read_text(), (home / "token").read_text()) == before


def test_login_without_a_token_to_a_server_that_requires_one_saves_nothing(cli, served, home):
    result = cli("login", "--endpoint", served.endpoint, "--plaintext", stdin="")
    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr
    assert_nothing_saved(home)


def test_login_over_tls_with_the_ca(cli, tmp_path, db_path, token_file, token, server_env, home):
    files = make_tls_files(tmp_path)
    args = [
        "--db",
        str(db_path),
        "--token-file",
        str(token_file),
        "--tls-cert",
        str(files.cert),
        "--tls-key",
        str(files.key),
    ]
    with ServerProcess.start(args, env=server_env) as server:
        refused = cli("login", "--endpoint", server.endpoint, stdin=token)
        assert refused.returncode == 1 and "not trusted" in refused.stderr
        assert_nothing_saved(home)
        result = cli("login", "--endpoint", server.endpoint, "--ca", str(files.ca), stdin=token)
        assert result.returncode == 0, result.stderr
        shown = context_json(cli)
    assert shown["where"] == f"{server.endpoint} (TLS, CA {files.ca})"
    assert json.loads((home / "config.json").read_text())["plaintext"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "nohost"], "port is missing"),
        (["--endpoint", "https://example.com:443"], "no scheme or path"),
        (["--endpoint", "127.0.0.1:1", "--plaintext", "--ca", __file__], "cannot be combined"),
        ([], "login needs the backend's address: --endpoint HOST:PORT"),
    ],
)
def test_bad_login_invocations_are_usage_errors(cli, home, args, message):
    result = cli("login", *args, stdin="whatever-token-value")
    assert result.returncode == 2
    assert message in result.stderr
    assert_nothing_saved(home)


def test_there_is_no_token_option_to_leak_into_shell_history(cli):
    assert "--token" not in cli("login", "--help").stdout


def test_logout_when_local_changes_nothing(cli, home):
    result = cli("logout")
    assert result.returncode == 0
    assert "already using the local backend" in result.stderr
    assert not (home / "config.json").exists()


class FutureContractBackend(SqliteBackend):
    """A real SQLite backend that claims a contract this CLI does not speak."""

    async def get_backend_info(self, message: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        info = await super().get_backend_info(message)
        info.contract_version = "2.0"
        return info


async def test_login_refuses_an_incompatible_contract(server_env, home, tmp_path):
    backend = FutureContractBackend(tmp_path / "future.db")
    server = BackendServer(backend)
    await server.start(listening_socket("127.0.0.1", 0))
    try:
        code, _, err = await acli(server_env, "login", "--endpoint", f"127.0.0.1:{server.address[1]}", "--plaintext")
    finally:
        await server.shutdown(0)
        await backend.aclose()
    assert code == 1
    assert "implements contract 2.0; this stigmer speaks 1.x" in err
    assert_nothing_saved(home)


UNLOCKED_KEYRING = "echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null"


def test_with_a_real_keychain_the_token_lives_there_and_not_in_a_file(served, token, home, tmp_path, server_env):
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/setup (it installs gnome-keyring and dbus)"
    data = tmp_path / "xdg-data"
    data.mkdir(mode=0o700)
    env = {name: value for name, value in server_env.items() if name != "DBUS_SESSION_BUS_ADDRESS"}
    env["XDG_DATA_HOME"] = str(data)
    scenario = Path(__file__).with_name("login_keychain_scenario.py")
    command = ["dbus-run-session", "--", "sh", "-c", f'{UNLOCKED_KEYRING}; exec "$@"', "sh"]
    done = subprocess.run(
        [*command, sys.executable, str(scenario), served.endpoint],
        input=token,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    observed = json.loads(done.stdout)
    assert observed["keychain"] == "keyring.backends.SecretService.Keyring"
    assert observed["login"][0] == 0, observed["login"]
    assert "token kept in the OS keychain (keyring.backends.SecretService.Keyring)" in observed["login"][1]
    assert observed["in_keychain"] is True
    assert observed["token_file_exists"] is False
    assert observed["token_in_config"] is False
    assert observed["context"][0] == 0 and observed["context"][1]["contractVersion"] == "1.0"
    assert observed["logout"] == 0
    assert observed["in_keychain_after_logout"] is False


def test_a_token_that_cannot_be_a_header_is_refused_before_any_call(cli, served, home):
    result = cli("login", "--endpoint", served.endpoint, "--plaintext", stdin="two words\n")
    assert result.returncode == 2
    assert "printable ASCII without spaces" in result.stderr
    assert "two words" not in result.stderr
    assert_nothing_saved(home)


def test_a_hand_broken_saved_login_is_one_line(cli, home):
    (home / "config.json").write_text(json.dumps({"endpoint": "no-port-here", "ca_file": "", "plaintext": True}))
    result = cli("context")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: FAILED_PRECONDITION: the saved login is unusable ('no-port-here' is not HOST:PORT (the port is "
        "missing)); run `stigmer login` again"
    ]
