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
- Of the contract's callers (``cli/``, ``server/``, ``runner/``, ``fullstack/``),
  only ``runner/steps.call_model`` fetches an execution context, the message
  with secret values, and it calls the model in the same step.

Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
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


CONTEXT_FETCH = ("runner/steps.py", "call_model")
"""The one function that fetches an execution context: it calls the model in the same step."""


def context_fetches(root: Path) -> list[str]:
    """Each use of ``get_execution_context`` by a caller of the contract, outside ``call_model``.

    The context is the only message with secret values; fetched anywhere else,
    they would cross a step boundary (a Temporal activity result, a queue message).
    """
    found = []
    for folder in ("cli", "server", "runner", "fullstack"):
        for path in sorted((root / folder).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(), where)
            allowed = {
                id(node)
                for function in ast.walk(tree)
                if isinstance(function, ast.AsyncFunctionDef) and (where, function.name) == CONTEXT_FETCH
                for node in ast.walk(function)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr == "get_execution_context" and id(node) not in allowed:
                    found.append(f"{where}:{node.lineno}: fetches an execution context outside {CONTEXT_FETCH[1]}")
    return found


def test_only_call_model_fetches_an_execution_context():
    assert context_fetches(ROOT) == []
    assert context_fetches_in(ROOT, "runner/steps.py") == 1, "call_model no longer fetches the context?"


def context_fetches_in(root: Path, relative: str) -> int:
    tree = ast.parse((root / relative).read_text())
    return sum(isinstance(n, ast.Attribute) and n.attr == "get_execution_context" for n in ast.walk(tree))


def test_a_context_fetch_in_another_step_is_caught(tmp_path):
    planted = {
        "runner/steps.py": "async def call_model(b):\n    await b.get_execution_context(r)\n"
        "async def claim(b):\n    await b.get_execution_context(r)\n",
        "fullstack/activities.py": "async def fetch(b):\n    return await b.get_execution_context(r)\n",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert context_fetches(tmp_path) == [
        "runner/steps.py:4: fetches an execution context outside call_model",
        "fullstack/activities.py:2: fetches an execution context outside call_model",
    ]
