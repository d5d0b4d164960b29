"""Which backend the CLI talks to: a backend kind and its settings.

Kept in ``$STIGMER_HOME/config.json`` (no secrets in it: a remote token lives
in the OS keychain or a 0600 file, see ``stigmer_backend.backends.cloud``). No file
means the local SQLite database. ``_backends`` turns a context into a backend;
a new storage kind is one line in ``backends/registry.py``, and its settings fit ``url``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import click

__all__ = ["LOCAL", "REMOTE", "Context", "config_path", "load_context", "save_context"]

LOCAL = "sqlite"
"""The kind used when nothing else is configured: ``$STIGMER_HOME/local.db``."""
REMOTE = "cloud"
"""The kind ``stigmer login`` saves: a ``BackendService`` endpoint, reached over gRPC."""


@dataclass(frozen=True)
class Context:
    """The active backend.

    :param kind: a storage kind of ``backends/registry.py`` (``sqlite``, ``postgresql``, ...) or ``cloud``;
        empty means ``cloud`` when ``endpoint`` is set, else ``sqlite``, which is
        how a config file written before kinds existed reads.
    :param url: where a storage backend keeps its data, in the form its class
        takes (a SQLite file path, ``postgresql://host/db``); empty for the
        kind's default. Never holds a password: credentials come from the
        environment or the keychain.
    :param endpoint: ``HOST:PORT`` of a remote backend.
    :param ca_file: PEM file of the CA the remote endpoint's certificate must chain to.
    :param plaintext: no TLS (h2c) to the endpoint: for a loopback server or a trusted network only.
    """

    kind: str = ""
    url: str = ""
    endpoint: str = ""
    ca_file: str = ""
    plaintext: bool = False

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", REMOTE if self.endpoint else LOCAL)

    @property
    def is_remote(self) -> bool:
        return self.kind == REMOTE


def config_path() -> Path:
    from stigmer_backend.backends.home import stigmer_home

    return stigmer_home() / "config.json"


def load_context() -> Context:
    from stigmer_backend.backends.private_files import read_private

    path = config_path()
    text = read_private(path, "the Stigmer config")  # refuses a file another user controls
    if text is None:
        return Context()
    try:
        data = json.loads(text)
        return Context(
            kind=str(data.get("kind", "")),
            url=str(data.get("url", "")),
            endpoint=str(data.get("endpoint", "")),
            ca_file=str(data.get("ca_file", "")),
            plaintext=data.get("plaintext", False) is True,
        )
    except (ValueError, AttributeError) as error:
        raise click.ClickException(f"cannot read {path}: {error}; fix or delete it") from None


def save_context(context: Context) -> None:
    """Writes the config atomically (a crash leaves the old or the new file, never half of one)."""
    from stigmer_backend.backends.private_files import write_private

    write_private(config_path(), json.dumps(asdict(context), indent=2) + "\n")
