"""The ``backend`` fixture for a run against ``--stigmer-target`` or ``--stigmer-server-command``.

Registered only then: with ``--stigmer-backend-fixture`` the caller's own
``backend`` fixture is the backend under test (see ``fixtures``).
"""

from __future__ import annotations

from typing import Any

import pytest

from .run import ConformanceRun

__all__ = ["backend"]


@pytest.fixture
def backend(stigmer_run: ConformanceRun) -> Any:
    """The backend under test (in-process object or generated stub)."""
    return stigmer_run.target.backend
