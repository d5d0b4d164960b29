"""The modules of ``conformance/`` import one another without a circle (issue 12, "One name").

``fixtures`` and ``target_backend`` reach the run's state in ``run``, never the
plugin that registers them. Every import counts, including those inside
functions and under ``TYPE_CHECKING``: a type checker and a dependency grapher
follow those too. Importing a submodule does not count as importing its
package's ``__init__`` (Python runs it first, but the package does not depend on
the importer); ``from package import name`` of a name that is no module does.
"""

from __future__ import annotations

from pathlib import Path

from tests.import_statements import imports, module_name

ROOT = Path(__file__).resolve().parents[2] / "conformance"
PACKAGE = "stigmer_backend.conformance"


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[2:]) if name != PACKAGE else Path()
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """Each module of ``conformance/`` and the modules of ``conformance/`` it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(ROOT, path, PACKAGE)
        targets: set[str] = set()
        for _, source, names in imports(ROOT, path, PACKAGE):
            if not names:  # `import x`, or a name of a `from` import seen as a module
                targets.add(source)
            elif not all(_is_module(f"{source}.{name}") for name in names):
                targets.add(source)  # a name defined in `source` itself
        graph[module] = {t for t in targets if t.startswith(PACKAGE) and _is_module(t) and t != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk finds, each as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every import below is walked

    def walk(module: str, path: list[str]) -> None:  # `path` ends with `module`
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return found


def test_the_conformance_modules_import_each_other_without_a_circle() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.run" in graph[f"{PACKAGE}.fixtures"]  # the walk sees the imports it checks
    assert circles(graph) == []


def test_a_circle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c", "a"]]
