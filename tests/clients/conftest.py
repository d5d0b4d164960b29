"""Toolchains and builds for the example clients in ``examples/go-client`` and ``examples/ts-client``.

Each client is built once per session from the committed sources and stubs.
Where a toolchain is missing (``scripts/setup`` installs it where it can), the
tests that need it are skipped with one line saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.remote_fixtures import db_path, home, served, server_env, token, token_file  # noqa: F401

GO_CLIENT = REPO / "examples/go-client"
TS_CLIENT = REPO / "examples/ts-client"
GO_IMPORT_PATH = "stigmer-go-client"
"""The example's import path in GOPATH mode; `buf.gen.go.yaml` gives the stubs the same prefix."""
DEBIAN_GOCODE = Path("/usr/share/gocode")
"""Where Debian's golang-*-dev packages put their sources (`dpkg -L golang-google-grpc-dev`)."""
GO_PACKAGES = "golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev"


def go_env(gopath: Path) -> dict[str, str]:
    """GOPATH mode, offline: the example's tree first, then Debian's Go sources."""
    env = dict(os.environ)
    env.update(GO111MODULE="off", GOPATH=f"{gopath}{os.pathsep}{DEBIAN_GOCODE}", GOFLAGS="", GOPROXY="off")
    return env


def require_go() -> str:
    go = shutil.which("go")
    if go is None or not (DEBIAN_GOCODE / "src/google.golang.org/grpc").is_dir():
        pytest.skip(f"Go client: install {GO_PACKAGES} (scripts/setup does, as root)")
    return go


def require_ts_client() -> str:
    node = shutil.which("node")
    if node is None or not (TS_CLIENT / "node_modules/.bin/tsc").is_file():
        pytest.skip(
            "TypeScript client: install Node.js 20+ with npm; scripts/setup then runs `npm ci` in examples/ts-client"
        )
    return node


@pytest.fixture(scope="session")
def go_client(tmp_path_factory) -> list[str]:
    """The Go client, built in GOPATH mode from ``examples/go-client``: the command that runs it."""
    go = require_go()
    gopath = tmp_path_factory.mktemp("gopath")
    package = gopath / "src" / GO_IMPORT_PATH
    package.parent.mkdir(parents=True)
    package.symlink_to(GO_CLIENT, target_is_directory=True)
    binary = gopath / "bin" / "stigmer-go-client"
    result = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=package,
        env=go_env(gopath),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, "go build failed:\n" + result.stderr
    return [str(binary)]


@pytest.fixture(scope="session")
def ts_client(tmp_path_factory) -> list[str]:
    """The TypeScript client, compiled by its pinned ``tsc`` (strict) into a temporary folder."""
    node = require_ts_client()
    out = tmp_path_factory.mktemp("ts-client")
    result = subprocess.run(
        [node, str(TS_CLIENT / "node_modules/.bin/tsc"), "--project", str(TS_CLIENT), "--outDir", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, "tsc failed:\n" + result.stdout + result.stderr
    # Node resolves the packages and the module type from the folder the script is in.
    shutil.copy(TS_CLIENT / "package.json", out / "package.json")
    (out / "node_modules").symlink_to(TS_CLIENT / "node_modules", target_is_directory=True)
    return [node, str(out / "main.js")]
