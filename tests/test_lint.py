"""The code is ruff-clean and ruff-formatted (gen/ excluded: the compiler formats it)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_check_is_clean():
    result = subprocess.run([RUFF, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_is_clean():
    result = subprocess.run([RUFF, "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
