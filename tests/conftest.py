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
