"""Running the CLI in-process against a private ``STIGMER_HOME``."""

from __future__ import annotations

import base64
import os

import pytest
from click.testing import CliRunner, Result

from stigmer_backend.cli.main import cli


class Stigmer:
    """``stigmer`` with ``STIGMER_HOME`` in a temporary directory and a test master key."""

    def __init__(self, home) -> None:
        self.home = home
        self.env = {
            "STIGMER_HOME": str(home),
            "STIGMER_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        }

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, env=self.env, catch_exceptions=False)


@pytest.fixture
def stigmer(tmp_path) -> Stigmer:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return Stigmer(home)
