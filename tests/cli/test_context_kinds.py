"""The CLI context names a backend kind and its settings; a storage backend is configuration, not code."""

from __future__ import annotations

import json

from stigmer_backend.backends import registry
from stigmer_backend.cli._context import Context, load_context, save_context
from tests.builders import one_line_error


def _use(stigmer, **config) -> None:
    (stigmer.home / "config.json").write_text(json.dumps(config))


def test_a_config_from_before_kinds_reads_as_sqlite_or_cloud(stigmer, monkeypatch):
    monkeypatch.setenv("STIGMER_HOME", str(stigmer.home))
    _use(stigmer, endpoint="", ca_file="", plaintext=False)
    assert load_context().kind == "sqlite"
    _use(stigmer, endpoint="example.com:443", ca_file="", plaintext=False)
    assert load_context() == Context(kind="cloud", endpoint="example.com:443")
    save_context(Context(kind="sqlite", url="/some/where.db"))
    assert load_context() == Context(kind="sqlite", url="/some/where.db")


def test_a_sqlite_context_with_a_url_uses_that_file(stigmer, tmp_path):
    other = tmp_path / "elsewhere.db"
    _use(stigmer, kind="sqlite", url=str(other))
    assert stigmer("secret", "put", "ONLY_HERE", input="v\n").exit_code == 0
    assert other.exists() and not (stigmer.home / "local.db").exists()
    assert json.loads(stigmer("secret", "list", "-o", "json").stdout)["secrets"][0]["name"] == "ONLY_HERE"


def test_an_unknown_kind_is_one_line(stigmer):
    _use(stigmer, kind="mysql", url="mysql://db.example/stigmer")
    line = one_line_error(stigmer("agent", "list"))
    assert line == "Error: FAILED_PRECONDITION: unknown backend kind 'mysql' (known: cloud, postgresql, sqlite)"


def test_a_new_storage_kind_is_one_registration(stigmer, tmp_path, monkeypatch):
    """A registered class is opened with the context's url: here SQLite under a second name."""
    monkeypatch.setitem(registry.STORAGE_BACKENDS, "sqlite-copy", "stigmer_backend.backends.sqlite:SqliteBackend")
    database = tmp_path / "copy.db"
    _use(stigmer, kind="sqlite-copy", url=str(database))
    assert stigmer("agent", "list", "-o", "json").exit_code == 0
    assert database.exists()


def test_storage_urls_name_their_kind():
    assert registry.storage_kind("postgresql://db.example/stigmer") == "postgresql"
    assert registry.storage_kind("postgres://db.example/stigmer") == "postgresql"  # libpq's other spelling
    assert registry.storage_kind("/home/me/.stigmer/local.db") == "sqlite"


def test_key_commands_need_a_backend_that_keeps_its_own_key(stigmer):
    _use(stigmer, kind="cloud", endpoint="127.0.0.1:9", plaintext=True)
    assert "works on the local database only" in one_line_error(stigmer("secret", "status"))


def test_context_shows_the_configured_file(stigmer, tmp_path):
    other = tmp_path / "elsewhere.db"
    _use(stigmer, kind="sqlite", url=str(other))
    shown = json.loads(stigmer("context", "-o", "json").stdout)
    assert (shown["mode"], shown["where"], shown["backendKind"]) == ("local", str(other), "sqlite")
