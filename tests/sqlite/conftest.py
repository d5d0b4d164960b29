"""Fixtures of the SQLite backend tests (helpers live in ``_support``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path in a fresh directory; the file does not exist yet."""
    return tmp_path / "local.db"
