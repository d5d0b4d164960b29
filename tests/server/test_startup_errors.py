"""``stigmer server`` refuses bad setups with one line, a non-zero exit and no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from stigmer_backend.backends.cloud import CloudBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.certificates import make_tls_files
from tests.remote_fixtures import write_token_file

STIGMER = str(Path(sys.executable).with_name("stigmer"))


def run_server(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs ``stigmer server ARGS``, which must fail before serving (a deadline guards against it serving)."""
    return subprocess.run(
        [STIGMER, "server", "--port", "0", *args], env=env, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str, code: int = 1) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # never claimed to listen
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_port_in_use_is_one_line(server_env):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [STIGMER, "server", "--port", str(port)], env=server_env, capture_output=True, text=True, timeout=60
        )
    assert_one_line_error(result, f"127.0.0.1:{port}", "already in use")


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_non_loopback_address_without_a_token_is_refused(server_env, host):
    assert_one_line_error(run_server(["--host", host], server_env), "refusing to listen", "without authentication")


async def test_a_non_loopback_address_with_a_token_is_served(server_env, token_file, token, tmp_path):
    args = ["--host", "0.0.0.0", "--token-file", str(token_file), "--db", str(tmp_path / "all.db")]
    with ServerProcess.start(args, env=server_env) as server:
        assert server.endpoint.startswith("0.0.0.0:")
        async with CloudBackend(f"127.0.0.1:{server.port}", token=token) as backend:
            assert (await backend.get_backend_info(pb.GetBackendInfoRequest())).contract_version == "1.0"
        assert "no TLS on a non-loopback address" in server.stderr_text()


def test_a_missing_certificate_is_one_line(server_env, tmp_path):
    result = run_server(["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.key")], server_env)
    assert_one_line_error(result, "TLS certificate file", "nope.pem", "not found")


def test_a_missing_key_is_one_line(server_env, tmp_path):
    files = make_tls_files(tmp_path)
    result = run_server(["--tls-cert", str(files.cert), "--tls-key", str(tmp_path / "nope.key")], server_env)
    assert_one_line_error(result, "TLS key file", "nope.key", "not found")


def test_a_key_that_does_not_match_the_certificate_is_one_line(server_env, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = make_tls_files(tmp_path / "a"), make_tls_files(tmp_path / "b")
    result = run_server(["--tls-cert", str(first.cert), "--tls-key", str(second.key)], server_env)
    assert_one_line_error(result, str(first.cert), str(second.key), "the key does not match the certificate")


def test_a_certificate_file_that_is_not_pem_is_one_line(server_env, tmp_path):
    files = make_tls_files(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    result = run_server(["--tls-cert", str(garbage), "--tls-key", str(files.key)], server_env)
    assert_one_line_error(result, "TLS certificate file", "garbage.pem", "holds no PEM certificate")


def test_a_key_file_that_is_not_a_key_is_one_line(server_env, tmp_path):
    files = make_tls_files(tmp_path)
    result = run_server(["--tls-cert", str(files.cert), "--tls-key", str(files.cert)], server_env)
    assert_one_line_error(result, "TLS key file", "server.pem", "holds no usable PEM private key")


def test_an_encrypted_key_is_one_line_not_a_prompt(server_env, tmp_path):
    files = make_tls_files(tmp_path)
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    result = run_server(["--tls-cert", str(files.cert), "--tls-key", str(encrypted)], server_env)
    assert_one_line_error(result, "encrypted.key", "is encrypted")


def test_a_certificate_without_its_key_is_a_usage_error(server_env, tmp_path):
    files = make_tls_files(tmp_path)
    result = run_server(["--tls-cert", str(files.cert)], server_env)
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setup", "fragments"),
    [
        (lambda path: None, ("token file", "not found")),
        (lambda path: path.mkdir(), ("token file", "is a directory")),
        (lambda path: write_token_file(path, ""), ("token file", "is empty")),
        (lambda path: write_token_file(path, "short"), ("too short",)),
        (lambda path: write_token_file(path, "has spaces in the middle of it"), ("printable ASCII without spaces",)),
        (
            lambda path: (write_token_file(path, "a-long-enough-token-1234"), path.chmod(0o640)),
            ("accessible by other users", "0640", "chmod 600"),
        ),
        (
            lambda path: (write_token_file(path, "a-long-enough-token-1234"), path.chmod(0o604)),
            ("accessible by other users", "0604"),
        ),
    ],
    ids=["missing", "directory", "empty", "short", "spaces", "group-readable", "world-readable"],
)
def test_an_unusable_token_file_is_one_line(server_env, tmp_path, setup, fragments):
    path = tmp_path / "token"
    setup(path)
    assert_one_line_error(run_server(["--token-file", str(path)], server_env), str(path), *fragments)


def test_a_token_in_both_the_file_and_the_environment_is_ambiguous(server_env, token_file):
    env = {**server_env, "STIGMER_SERVER_TOKEN": "another-long-enough-token"}
    assert_one_line_error(run_server(["--token-file", str(token_file)], env), "either with --token-file or with")


def test_a_short_token_in_the_environment_is_refused(server_env):
    env = {**server_env, "STIGMER_SERVER_TOKEN": "abc"}
    assert_one_line_error(run_server([], env), "STIGMER_SERVER_TOKEN", "too short")


def test_a_database_that_is_not_sqlite_is_one_line(server_env, tmp_path):
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a database" * 100)
    assert_one_line_error(run_server(["--db", str(bogus)], server_env), "bogus.db")
