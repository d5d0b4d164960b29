"""Fixtures for the secrets tests: a private Stigmer home, and a backend whose key lives in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend

from .workload import file_source


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private (0700) ``$STIGMER_HOME``, and an environment with no key and no session keychain."""
    path = tmp_path / "stigmer-home"
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    monkeypatch.setenv("STIGMER_HOME", str(path))
    for name in ("STIGMER_MASTER_KEY", "STIGMER_NEW_MASTER_KEY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
async def backend(home: Path) -> AsyncIterator[SqliteBackend]:
    async with SqliteBackend(home / "local.db", master_key=file_source(home)) as opened:
        yield opened
