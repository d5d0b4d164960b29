"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def toolchain_env() -> dict[str, str]:
    """The environment with this interpreter's scripts first on PATH.

    buf finds the local plugin ``protoc-gen-python_betterproto2`` on PATH; the
    pinned one is installed next to the interpreter running the tests.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture(scope="session")
def buf() -> str:
    """Path of the pinned ``buf`` binary (from the ``buf-bin`` package)."""
    path = shutil.which("buf", path=toolchain_env()["PATH"])
    assert path, "buf is not installed: install the project with its [dev] extra"
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_stigmer_home(tmp_path_factory):
    """No test reads or writes the real ``~/.stigmer`` or keychain entry of whoever runs the tests."""
    saved = {name: os.environ.get(name) for name in ("STIGMER_HOME", "STIGMER_MASTER_KEY")}
    home = tmp_path_factory.mktemp("stigmer-home")
    home.chmod(0o700)
    os.environ["STIGMER_HOME"] = str(home)
    os.environ.pop("STIGMER_MASTER_KEY", None)
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
