"""Which backend the CLI talks to: the local SQLite file, or a remote endpoint.

Kept in ``$STIGMER_HOME/config.json`` (no secrets in it: a remote token lives
in the OS keychain or a 0600 file, see ``stigmer.backends.cloud``). No file
means local mode.
"""

from __future__ import annotations

import json
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
    from stigmer.backends.private_files import read_private

    path = config_path()
    text = read_private(path, "the Stigmer config")  # refuses a file another user controls
    if text is None:
        return Context()
    try:
        data = json.loads(text)
        return Context(
            endpoint=str(data.get("endpoint", "")),
            ca_file=str(data.get("ca_file", "")),
            plaintext=data.get("plaintext", False) is True,
        )
    except (ValueError, AttributeError) as error:
        raise click.ClickException(f"cannot read {path}: {error}; fix or delete it") from None


def save_context(context: Context) -> None:
    """Writes the config atomically (a crash leaves the old or the new file, never half of one)."""
    from stigmer.backends.private_files import write_private

    write_private(config_path(), json.dumps(asdict(context), indent=2) + "\n")
