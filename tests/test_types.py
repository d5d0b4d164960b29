"""mypy --strict on our code, through the installed package (config: ``[tool.mypy]`` in pyproject.toml).

The editable install is a link tree of the top-level folders, so mypy resolves every import
between them as an editor does; a folder it could not reach would show as fewer files checked.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

CHECKED = ("backends", "cli", "conformance", "server", "runner", "fullstack", "proto")


def test_our_code_passes_mypy_strict_and_every_module_is_checked():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=900)
    # Errors name the link tree's symlinks; show the files as they are in the repository.
    shown = re.sub(r"\S*/__editable__[^/\s]*/stigmer_backend/", "", result.stdout + result.stderr)
    assert result.returncode == 0, shown
    checked = int(re.search(r"no issues found in (\d+) source files", shown).group(1))
    modules = [path for folder in CHECKED for path in (REPO / folder).rglob("*.py")]
    assert checked >= len(modules), (checked, len(modules))
