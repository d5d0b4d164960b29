"""Which folder may import which: the rooms of the house, checked on every import statement.

- ``backends/`` never imports ``cli/``, ``server/``, ``runner/`` or ``conformance/``:
  a backend knows nothing of who calls it.
- An adapter (each folder or module in ``backends/`` that is not a shared layer:
  ``sqlite/``, ``cloud/``, ``postgres/``, ``memory.py``) imports the
  shared layers (``rules/``, ``encryption/``, ``base``, ``wire``, ...) and never
  another adapter; the shared layers import no adapter.
- ``server/``, ``runner/`` and ``fullstack/`` never import ``cli/``.
- ``conformance/`` (a library third parties install to check their backend)
  imports no ``cli/``, ``server/``, ``runner/`` or ``fullstack/``: it reaches
  storage backends through ``backends/registry.py`` like everyone else.
- A CLI command module imports no private name (``_x``) of another command
  module: what two commands share lives in a private module of its own.

Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

from pathlib import Path

from tests.import_statements import imports, module_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stigmer_backend"
SHARED = {
    "rules",
    "encryption",
    "base",
    "home",
    "keychain",
    "wire",
    "codec",
    "batched_writes",
    "private_files",
    "registry",
}
"""The parts of ``backends/`` every adapter may use; anything else in ``backends/`` is an adapter."""
CALLERS = {"cli", "server", "runner", "conformance", "fullstack"}


def _module_name(root: Path, path: Path) -> str:
    return module_name(root, path, PACKAGE)


def _imports(root: Path, path: Path) -> list[tuple[int, str, list[str]]]:
    return imports(root, path, PACKAGE)


def _part(module: str, folder: str) -> str | None:
    """The first part under ``stigmer.<folder>`` that ``module`` is in, or None if it is not in that folder."""
    parts = module.split(".")
    if parts[:2] != [PACKAGE, folder]:
        return None
    return parts[2] if len(parts) > 2 else ""


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        folder = relative.parts[0]
        if folder not in {"backends", "server", "runner", "fullstack", "cli", "conformance"}:
            continue
        where = relative.as_posix()
        own = _part(_module_name(root, path), folder)
        for line, target, names in _imports(root, path):
            parts = target.split(".")
            caller = parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None
            if folder == "backends" and caller in CALLERS:
                found.append(f"{where}:{line}: a backend imports {caller}/")
            if folder in {"server", "runner", "fullstack"} and caller == "cli":
                found.append(f"{where}:{line}: {folder}/ imports cli/")
            if folder == "conformance" and caller in CALLERS - {"conformance"}:
                found.append(f"{where}:{line}: the conformance suite imports {caller}/")
            if folder == "backends":
                other = _part(target, "backends")
                if other and other not in SHARED and other != own:
                    kind = "shared layer" if own in SHARED else "adapter"
                    found.append(f"{where}:{line}: the {kind} {own!r} imports the adapter {other!r}")
            if folder == "cli" and not own.startswith("_"):
                other = _part(target, "cli")
                private = [name for name in names if name.startswith("_")]
                if other and other != own and not other.startswith("_") and private:
                    found.append(f"{where}:{line}: imports {', '.join(private)} private to cli/{other}.py")
    return list(dict.fromkeys(found))


def test_the_rooms_do_not_reach_into_each_other():
    assert violations(ROOT) == []


def test_every_kind_of_reach_is_caught(tmp_path):
    """The check itself, on a planted tree: each rule reports its violation, and allowed imports pass."""
    files = {
        "backends/__init__.py": "",
        "backends/base.py": "",
        "backends/rules/__init__.py": "from ..sqlite import SqliteBackend\n",
        "backends/sqlite/__init__.py": "from ..rules import paging\nfrom . import _backend\n",
        "backends/sqlite/_backend.py": "from ..memory import MemoryBackend\nfrom ..encryption import seal\n",
        "backends/cloud/_backend.py": "def f():\n    from stigmer_backend.cli._context import Context\n",
        "backends/memory.py": "from .rules import errors\nfrom . import base\n",
        "backends/postgres/_rows.py": "import stigmer_backend.backends.sqlite._rows\n",
        "server/startup.py": "from stigmer_backend.cli import _runtime\nfrom stigmer_backend.backends import wire\n",
        "cli/__init__.py": "",
        "cli/agents.py": "from ._runtime import run\n",
        "cli/executions.py": "from .agents import _ref, AGENT_COLUMNS\nfrom ._agent_refs import agent_ref\n",
        "conformance/targets.py": "from stigmer_backend.backends import registry\nfrom ..cli import _backends\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert violations(tmp_path) == [
        "backends/cloud/_backend.py:2: a backend imports cli/",
        "backends/postgres/_rows.py:1: the adapter 'postgres' imports the adapter 'sqlite'",
        "backends/rules/__init__.py:1: the shared layer 'rules' imports the adapter 'sqlite'",
        "backends/sqlite/_backend.py:1: the adapter 'sqlite' imports the adapter 'memory'",
        "cli/executions.py:1: imports _ref private to cli/agents.py",
        "conformance/targets.py:2: the conformance suite imports cli/",
        "server/startup.py:1: server/ imports cli/",
    ]
