"""The ``backend`` fixture for a run against ``--stigmer-target`` or ``--stigmer-server-command``.

Registered only then: with ``--stigmer-backend-fixture`` the caller's own
``backend`` fixture is the backend under test (see ``fixtures``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .run import ConformanceRun

if TYPE_CHECKING:
    from .client import BackendUnderTest

__all__ = ["backend"]


@pytest.fixture
def backend(stigmer_run: ConformanceRun) -> BackendUnderTest:
    """The backend under test (in-process object or generated stub)."""
    target = stigmer_run.target
    assert target is not None  # this fixture is registered only with a target, which `stigmer_run` opened
    return target.backend
