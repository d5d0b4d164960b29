"""The wheel: it ships the contract (every ``.proto`` file, byte for byte, under ``stigmer_backend/proto/``),
and installs beside PyPI's ``stigmer`` (the Stigmer SDK, which owns the import package ``stigmer``)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--quiet", "--wheel-dir", str(where)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (built,) = where.glob("stigmer_backend-*.whl")
    return built


def test_the_wheel_ships_every_proto_file(wheel):
    protos = sorted((REPO / "proto").rglob("*.proto"))
    assert len(protos) >= 6
    with zipfile.ZipFile(wheel) as archive:
        for proto in protos:
            shipped = "stigmer_backend/proto/" + proto.relative_to(REPO / "proto").as_posix()
            assert archive.read(shipped) == proto.read_bytes(), shipped
        assert "stigmer_backend/proto/__init__.py" in archive.namelist()
        # The conformance report names the contract sentence a failing test checks, from the matrix.
        matrix = REPO / "conformance/TRACEABILITY.md"
        assert archive.read("stigmer_backend/conformance/TRACEABILITY.md") == matrix.read_bytes()


def test_the_installed_package_points_at_the_proto_files():
    from stigmer_backend.proto import ROOT

    assert (ROOT / "stigmer/backend/v1/backend_service.proto").read_bytes() == (
        REPO / "proto/stigmer/backend/v1/backend_service.proto"
    ).read_bytes()


def test_pypi_stigmer_and_this_project_install_and_work_in_one_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, stigmer = venv / "bin" / "python", venv / "bin" / "stigmer"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel), "stigmer==3.41.0"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = (
        "import stigmer, stigmer_backend.cli.main as ours\n"
        "from stigmer_backend.gen.stigmer.backend import v1 as pb\n"
        "print(stigmer.__file__); print(ours.__file__); print(pb.Execution.__module__)"
    )
    imported = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    sdk, cli, generated = imported.stdout.split()
    site = str(venv / "lib")
    assert sdk.startswith(site) and sdk.endswith("/stigmer/__init__.py")  # the SDK's own package
    assert cli.startswith(site) and cli.endswith("/stigmer_backend/cli/main.py")
    assert generated == "stigmer_backend.gen.stigmer.backend.v1"

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "STIGMER_HOME": str(home)}
    for command in ([str(stigmer)], [str(python), "-m", "stigmer_backend.cli"]):
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=300, env=env)
        assert (version.returncode, version.stdout) == (0, "stigmer, version 0.1.0\n"), version.stderr
    applied = subprocess.run(
        [str(stigmer), "apply", "-f", str(REPO / "examples/echo-agent.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert applied.returncode == 0, applied.stderr
    assert "agent instance echo-bot created" in applied.stdout + applied.stderr
