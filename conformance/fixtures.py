"""The suite's fixtures, registered by the plugin only while a conformance run is active.

``backend`` is the one every other derives from, the backend object with the
generated method signatures; ``capabilities`` (which gates the optional tests)
is asked of that object. With ``--stigmer-target`` or
``--stigmer-server-command`` the plugin provides ``backend`` from the target
(``target_backend``). With ``--stigmer-backend-fixture`` it provides none and
opens nothing: a third party defines ``backend`` itself, fsspec-style, in the
``conftest.py`` next to test classes that subclass the suite's::

    # conftest.py
    @pytest.fixture
    def backend():
        return MyBackend()

    # test_my_backend.py
    from stigmer_backend.conformance.suite import executions

    class TestMyCreateExecution(executions.TestCreateExecution):
        pass

and runs ``pytest --stigmer-backend-fixture``. Overriding ``restart`` too
(a function returning the backend reopened on the same storage) enables the
durability tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from .run import RUN, ConformanceRun

if TYPE_CHECKING:
    from .client import BackendUnderTest, Client

__all__ = ["capabilities", "client", "restart", "stigmer_requirements", "stigmer_run"]


@pytest.fixture(scope="session")
def stigmer_run(request: pytest.FixtureRequest) -> ConformanceRun:
    run = request.config.stash[RUN]
    run.open()
    return run


@pytest.fixture
def client(stigmer_run: ConformanceRun, backend: BackendUnderTest) -> Iterator[Client]:
    """Synchronous, tracked calls to ``backend``; undoes what the test created."""
    from .client import Client

    client = Client(backend, stigmer_run.loop)
    yield client
    client.cleanup()


@pytest.fixture
def capabilities(stigmer_run: ConformanceRun, backend: BackendUnderTest) -> set[int]:
    """The optional capabilities ``GetBackendInfo`` of ``backend`` reports."""
    return set(stigmer_run.backend_info(backend).capabilities)


@pytest.fixture
def restart(stigmer_run: ConformanceRun) -> Callable[[], BackendUnderTest] | None:
    """A function that restarts the target on the same storage and returns the new backend; None if it cannot."""
    target = stigmer_run.target
    if target is None or not target.restartable:
        return None

    def restart() -> BackendUnderTest:
        stigmer_run.loop.run_until_complete(target.restart())
        return target.backend

    return restart


@pytest.fixture(autouse=True)
def stigmer_requirements(request: pytest.FixtureRequest) -> None:
    """Skips a test whose optional capability the backend lacks, or that needs a restart the target cannot do."""
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    for marker in request.node.iter_markers("requires_capability"):
        capability = pb.Capability(marker.args[0])
        if capability not in request.getfixturevalue("capabilities"):
            pytest.skip(f"optional: the backend does not report CAPABILITY_{capability.name}")
    if request.node.get_closest_marker("requires_restart") and request.getfixturevalue("restart") is None:
        pytest.skip("optional: this target cannot be restarted (use sqlite or --stigmer-server-command)")
