"""Which backend the CLI talks to: the local SQLite file, or a remote endpoint.

Kept in ``$STIGMER_HOME/config.json`` (no secrets in it: a remote token lives
in the OS keychain or a 0600 file, see ``stigmer.backends.cloud``). No file
means local mode.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import click

__all__ = ["Context", "config_path", "load_context", "save_context"]


@dataclass(frozen=True)
class Context:
    """The active backend. ``endpoint`` empty means local (SQLite)."""

    endpoint: str = ""
    ca_file: str = ""
    plaintext: bool = False  # no TLS (h2c): for a loopback server or a trusted network only

    @property
    def is_remote(self) -> bool:
        return bool(self.endpoint)


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
