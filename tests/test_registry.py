"""A new storage backend is one line in ``backends/registry.py``: every caller that opens storage reads it.

A class registered under a kind is reached, with no other edit, from a CLI
context naming that kind, from a URL with that scheme (``stigmer server
--backend`` and the conformance suite's ``--stigmer-target``), and the suite
restarts it on the same storage for its durability tests. (The CLI context:
``tests/cli/test_context_kinds.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stigmer_backend.backends import registry
from stigmer_backend.backends.encryption import MasterKeySource
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.conformance.targets import Options, TargetError, open_target
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import AGENT, apply_request

KIND = "sqlite-url"


class UrlSqlite(SqliteBackend):
    """SQLite reached by a ``sqlite-url:///path`` URL: a storage kind this repository does not register."""

    kind = KIND

    def __init__(self, url: str | None = None, *, master_key: MasterKeySource | None = None) -> None:
        super().__init__(url.partition("://")[2] if url else None, master_key=master_key)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one line a new backend adds."""
    monkeypatch.setitem(registry.STORAGE_BACKENDS, KIND, f"{__name__}:UrlSqlite")


def test_a_url_with_the_registered_scheme_opens_that_backend(registered: None, tmp_path: Path) -> None:
    url = f"{KIND}://{tmp_path / 'a.db'}"
    assert registry.storage_kind(url) == KIND
    backend = registry.open_storage(registry.storage_kind(url), url)
    assert isinstance(backend, UrlSqlite) and backend.path == tmp_path / "a.db"


async def test_the_conformance_target_opens_and_restarts_a_registered_kind(registered: None, tmp_path: Path) -> None:
    target = await open_target(Options(target=f"{KIND}://{tmp_path / 'suite.db'}"))
    try:
        assert target.description == f"{KIND} ({tmp_path / 'suite.db'})" and target.restartable
        await target.backend.apply_agent_instance(apply_request())
        await target.restart()
        assert isinstance(target.backend, UrlSqlite)
        got = await target.backend.get_agent_instance(
            pb.GetAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=AGENT))
        )
        assert got.agent_instance is not None and got.agent_instance.name == AGENT
    finally:
        await target.close()


async def test_an_unregistered_scheme_is_one_line_naming_the_known_kinds() -> None:
    with pytest.raises(TargetError) as raised:
        await open_target(Options(target="mysql://db.example/stigmer"))
    assert str(raised.value) == "unknown backend kind 'mysql' (known: postgresql, sqlite)"
