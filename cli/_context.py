"""Which backend the CLI talks to: a backend kind and its settings.

Kept in ``$STIGMER_HOME/config.json`` (no secrets in it: a remote token lives
in the OS keychain or a 0600 file, see ``stigmer.backends.cloud``). No file
means the local SQLite database. ``_backends`` turns a context into a backend;
a new kind is one registration there, and its settings fit ``url``.
"""

from __future__ import annotations

import json
import os
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

    :param kind: a kind registered in ``_backends`` (``sqlite``, ``cloud``, ...);
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
    from stigmer.backends.home import stigmer_home

    return stigmer_home() / "config.json"


def load_context() -> Context:
    path = config_path()
    if not path.exists():
        return Context()
    try:
        data = json.loads(path.read_text())
        return Context(
            kind=str(data.get("kind", "")),
            url=str(data.get("url", "")),
            endpoint=str(data.get("endpoint", "")),
            ca_file=str(data.get("ca_file", "")),
            plaintext=data.get("plaintext", False) is True,
        )
    except (OSError, ValueError, AttributeError) as error:
        raise click.ClickException(f"cannot read {path}: {error}; fix or delete it") from None


def save_context(context: Context) -> None:
    """Writes the config atomically (a crash leaves the old or the new file, never half of one)."""
    path = config_path()
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(context), file, indent=2)
        file.write("\n")
    os.replace(tmp, path)
