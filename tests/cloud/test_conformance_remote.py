"""The conformance suite passes against CloudBackend -> ``stigmer server`` (a separate process) -> SQLite,
with authentication, over plaintext and over TLS.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.certificates import make_tls_files

STIGMER = str(Path(sys.executable).with_name("stigmer"))


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_the_suite_passes_through_the_cloud_adapter_and_the_server(tmp_path, token_file, server_env, tls):
    server = [STIGMER, "server", "--port", "0", "--db", str(tmp_path / "served.db"), "--token-file", str(token_file)]
    suite = [STIGMER, "conformance", "run", "--adapter", "cloud", "--token-file", str(token_file)]
    if tls:
        files = make_tls_files(tmp_path)
        server += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
        suite += ["--ca", str(files.ca)]
    result = subprocess.run(
        [*suite, "--server-command", shlex.join(server)], env=server_env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdict = result.stdout.splitlines()[-1]  # the verdict is the last line
    assert "(contract 1.0, sqlite)" in verdict and verdict.endswith("CONFORMANT"), verdict
    assert " failed" not in verdict
