"""``stigmer server --tls-cert/--tls-key`` with a CA made in the test: trusted with the CA, refused without."""

from __future__ import annotations

import json
import logging
import subprocess

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.cloud import CloudBackend, RetryPolicy
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.server.launch import ServerProcess
from tests.builders import apply_request
from tests.certificates import make_tls_files


@pytest.fixture
def tls_files(tmp_path):
    directory = tmp_path / "tls"
    directory.mkdir()
    return make_tls_files(directory)


@pytest.fixture
def tls_server(tls_files, db_path, token_file, server_env):
    args = ["--db", str(db_path), "--token-file", str(token_file)]
    args += ["--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)]
    with ServerProcess.start(args, env=server_env) as server:
        yield server


async def test_a_client_trusting_the_ca_talks_to_the_tls_server(tls_server, tls_files, token):
    async with CloudBackend(tls_server.endpoint, token=token, ca_file=str(tls_files.ca)) as backend:
        applied = await backend.apply_agent_instance(apply_request())
        info = await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert applied.outcome == pb.ApplyOutcome.CREATED
    assert info.contract_version == "1.0"


async def test_localhost_matches_the_certificate_too(tls_server, tls_files, token):
    endpoint = f"localhost:{tls_server.port}"
    async with CloudBackend(endpoint, token=token, ca_file=str(tls_files.ca)) as backend:
        assert (await backend.get_backend_info(pb.GetBackendInfoRequest())).backend_kind == "sqlite"


async def test_without_the_ca_the_certificate_is_refused_with_a_clear_error_and_no_retry(tls_server, token, caplog):
    caplog.set_level(logging.INFO, logger="stigmer_backend.backends.cloud")
    async with CloudBackend(tls_server.endpoint, token=token, tls=True) as backend:
        with pytest.raises(GRPCError) as caught:
            await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert caught.value.status == Status.UNAVAILABLE
    assert tls_server.endpoint in caught.value.message
    assert "certificate is not trusted" in caught.value.message
    assert not [record for record in caplog.records if "attempt" in record.getMessage()]


async def test_a_ca_that_did_not_sign_the_certificate_is_refused(tls_server, token, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_tls_files(other, common_name="Some other CA")
    async with CloudBackend(tls_server.endpoint, token=token, ca_file=str(stranger.ca)) as backend:
        with pytest.raises(GRPCError) as caught:
            await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert caught.value.status == Status.UNAVAILABLE
    assert "not trusted" in caught.value.message


async def test_a_plaintext_client_cannot_talk_to_the_tls_server(tls_server, token):
    async with CloudBackend(tls_server.endpoint, token=token, retry=RetryPolicy(max_attempts=1)) as backend:
        with pytest.raises(GRPCError) as caught:
            await backend.get_backend_info(pb.GetBackendInfoRequest())
    assert caught.value.status == Status.UNAVAILABLE
    assert caught.value.message.startswith(f"{tls_server.endpoint} unreachable: ")


def test_buf_curl_calls_the_tls_server_trusting_the_ca(tls_server, tls_files, token, buf):
    header = f"authorization: Bearer {token}"
    url = f"https://{tls_server.endpoint}/stigmer.backend.v1.BackendService/GetBackendInfo"
    result = subprocess.run(
        [
            buf,
            "curl",
            "--protocol",
            "grpc",
            "--cacert",
            str(tls_files.ca),
            "-H",
            header,
            "--reflect-header",
            header,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["contractVersion"] == "1.0"
