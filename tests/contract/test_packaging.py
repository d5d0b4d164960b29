"""The wheel ships the contract: every ``.proto`` file, byte for byte, under ``stigmer_backend/proto/``."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_the_wheel_ships_every_proto_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--quiet", "--wheel-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("stigmer_backend-*.whl")
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
