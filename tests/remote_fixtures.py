"""Fixtures for tests of the remote path: a real ``stigmer server`` subprocess and its SQLite file.

Imported by ``tests/server/conftest.py`` and ``tests/cloud/conftest.py``.
Every server gets its own ``STIGMER_HOME`` and database in the test's
temporary directory, a fresh random token, and no OS keychain (the D-Bus
session address points nowhere), so tests never touch the user's state.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from stigmer_backend.server.launch import ServerProcess


def isolated_env(home: Path) -> dict[str, str]:
    """This process's environment with its own ``STIGMER_HOME`` and no server token or keychain."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STIGMER_")}
    env["STIGMER_HOME"] = str(home)
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={home}/no-dbus-here"
    return env


def write_token_file(path: Path, token: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return path


def count_rows(db: Path, table: str) -> int:
    """Rows in ``table``, read straight from the SQLite file (read-only), not through any backend."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def token() -> str:
    return secrets.token_hex(24)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def server_env(home: Path) -> dict[str, str]:
    return isolated_env(home)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "served.db"


@pytest.fixture
def token_file(tmp_path: Path, token: str) -> Path:
    return write_token_file(tmp_path / "server-token", token)


@pytest.fixture
def served(db_path: Path, token_file: Path, server_env: dict[str, str]) -> Iterator[ServerProcess]:
    """``stigmer server`` on a free loopback port, requiring ``token``, serving ``db_path``."""
    with ServerProcess.start(["--db", str(db_path), "--token-file", str(token_file)], env=server_env) as server:
        yield server
