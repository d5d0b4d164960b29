"""Decisions written once in ``backends/rules`` read the same from every Python backend."""

from __future__ import annotations

import ast
from pathlib import Path

from grpclib.const import Status

from stigmer_backend.backends.memory import MemoryBackend
from stigmer_backend.backends.rules import paging
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import apply_request, create_request, failure
from tests.conftest import REPO


async def test_a_reused_request_id_is_refused_in_the_same_words_by_sqlite_and_memory(tmp_path):
    messages = []
    async with SqliteBackend(tmp_path / "local.db") as sqlite, MemoryBackend() as memory:
        for backend in (sqlite, memory):
            await backend.apply_agent_instance(apply_request())
            await backend.create_execution(create_request("r-1", "first"))
            error = await failure(backend.create_execution(create_request("r-1", "other")))
            assert error.status == Status.ALREADY_EXISTS
            messages.append(error.message)
    assert messages[0] == messages[1] == "request_id 'r-1' was already used for a different execution request"


def test_cut_gives_a_token_only_when_an_item_lies_past_the_page():
    request = pb.ListSecretsRequest(page_size=2)
    assert paging.cut(request, ["a", "b"], 2, key=str) == (["a", "b"], "")
    page, token = paging.cut(request, ["a", "b", "c"], 2, key=str)
    assert page == ["a", "b"] and paging.decode_token(pb.ListSecretsRequest(page_size=2, page_token=token)) == "b"


def token_writers(root: Path) -> list[str]:
    """Each use of ``encode_token`` in ``backends/`` outside ``rules/``: an adapter deciding a page's end itself."""
    found = []
    for path in sorted((root / "backends").rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if where.startswith("backends/rules/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), where)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name == "encode_token":
                found.append(f"{where}:{node.lineno}: writes a page token; use paging.cut")
    return found


def test_adapters_end_pages_only_through_cut(tmp_path):
    assert token_writers(REPO) == []
    planted = tmp_path / "backends/mysql/_backend.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("token = paging.encode_token(message, rows[-1].id) if len(rows) > size else ''\n")
    assert token_writers(tmp_path) == ["backends/mysql/_backend.py:1: writes a page token; use paging.cut"]
