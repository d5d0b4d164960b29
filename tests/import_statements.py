"""The import statements of our source files, relative imports resolved: what the house-rule tests read."""

from __future__ import annotations

import ast
from pathlib import Path


def module_name(root: Path, path: Path, package: str) -> str:
    """The dotted name of ``path``, a file under ``root``, which is the folder of ``package``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports(root: Path, path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """``(line, imported module, imported names)`` for every import in ``path``, relative ones resolved.

    ``from package import x`` may import the module ``x``: it is listed as ``package.x`` too.
    """
    module = module_name(root, path, package)
    parent = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parent.split(".")[: len(parent.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            found.append((node.lineno, target, names))
            found += [(node.lineno, f"{target}.{name}", []) for name in names]
    return found
