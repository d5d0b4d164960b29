"""The suite's fixtures, registered by the plugin only while a conformance run is active.

``backend`` is the one every other derives from: the target's backend object,
with the generated method signatures. A third party running the suite from
its own pytest setup can override ``backend`` in a ``conftest.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .plugin import RUN, ConformanceRun

__all__ = ["backend", "capabilities", "client", "restart", "stigmer_run"]


@pytest.fixture(scope="session")
def stigmer_run(request: pytest.FixtureRequest) -> ConformanceRun:
    run = request.config.stash[RUN]
    run.open()
    return run


@pytest.fixture
def backend(stigmer_run: ConformanceRun) -> Any:
    """The backend under test (in-process object or generated stub)."""
    return stigmer_run.target.backend


@pytest.fixture
def client(stigmer_run: ConformanceRun, backend: Any):
    """Synchronous, tracked calls to ``backend``; undoes what the test created."""
    from .client import Client

    client = Client(backend, stigmer_run.loop)
    yield client
    client.cleanup()


@pytest.fixture(scope="session")
def capabilities(stigmer_run: ConformanceRun) -> set[int]:
    """The optional capabilities ``GetBackendInfo`` reports."""
    return stigmer_run.capabilities()


@pytest.fixture
def restart(stigmer_run: ConformanceRun):
    """A function that restarts the target on the same storage and returns the new backend."""

    def restart() -> Any:
        stigmer_run.loop.run_until_complete(stigmer_run.target.restart())
        return stigmer_run.target.backend

    return restart
