"""A real PostgreSQL server for the whole session (started by the tests, stopped at the end),
a fresh database per test, and ``stigmer server`` replicas on it.

Without PostgreSQL's programs every test here is skipped with one line saying
so; ``scripts/setup`` installs them (Debian's ``postgresql`` package).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stigmer_backend.server.launch import ServerProcess
from tests.postgres.cluster import Cluster, ClusterUnavailable
from tests.remote_fixtures import isolated_env


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    try:
        started = Cluster.start()
    except ClusterUnavailable as error:
        pytest.skip(f"no PostgreSQL server for these tests: {error}")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def database(cluster: Cluster) -> str:
    """The connection URI of a new, empty database."""
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def master_key() -> str:
    """One master key (base64 of 32 random bytes) shared by every replica, as ``STIGMER_MASTER_KEY``."""
    return base64.b64encode(os.urandom(32)).decode()


def replica_env(home: Path, master_key: str) -> dict[str, str]:
    home.mkdir(mode=0o700, exist_ok=True)
    return {**isolated_env(home), "STIGMER_MASTER_KEY": master_key}


@pytest.fixture
def start_replica(database: str, master_key: str, tmp_path: Path):
    """Starts ``stigmer server --backend DATABASE`` replicas (each its own home, one shared key); stops them all."""
    started: list[ServerProcess] = []

    def start(*extra: str) -> ServerProcess:
        home = tmp_path / f"replica-{len(started)}"
        server = ServerProcess.start(["--backend", database, *extra], env=replica_env(home, master_key))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
