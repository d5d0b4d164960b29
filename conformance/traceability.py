"""The traceability matrix: every normative sentence of the proto, mapped to the tests that check it.

The contract's promises are the sentences of the proto comments. This module
reads them from ``proto/`` (each element's comment split into sentences, a
sentence kept when it is normative: a failure code, a limit, an order, a
default, "never", "exactly", ...), gives each a stable id
(``Element#hash`` of its text, so inserting a sentence elsewhere moves no
other id) and checks them against ``TRACEABILITY.md``, where each sentence is
followed by the conformance test ids (fnmatch patterns) that check it::

    - `BackendService.GetExecution#1f0c2a` Fails with `INVALID_ARGUMENT` if ...
      - tests: `executions/GetExecution/*` `validation/invalid_request/GetExecution/*`

A sentence the suite cannot observe over the wire says so instead, with the
reason: ``untested: <why>``. ``python -m stigmer_backend.conformance.traceability
--write`` regenerates the file from the proto, keeping every mapping and adding
new sentences with an empty ``tests:`` line to fill in; the repository's tests
fail while any sentence has no mapping or a mapping names no existing test.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MATRIX", "PROTO_DIR", "Sentence", "normative_sentences", "problems", "read_matrix", "render"]

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto" / "stigmer" / "backend" / "v1"
MATRIX = Path(__file__).resolve().parent / "TRACEABILITY.md"

# What makes a sentence a promise a backend can break.
_NORMATIVE = re.compile(
    r"\b(fails?|never|exactly|only|must|always|at most|at least|required|means|order|ascending|"
    r"increment\w*|unset|kept|keeps?|replaced?|replaces|equal|default|unique|sorts?|"
    r"INVALID_ARGUMENT|NOT_FOUND|ABORTED|FAILED_PRECONDITION|ALREADY_EXISTS|UNAUTHENTICATED|"
    r"PERMISSION_DENIED|UNIMPLEMENTED|before|until|no later|consecutive|once|"
    r"rejected|case-sensitive|no others|writes nothing|nothing is written|current|next|again|storing|"
    r"ending|delivered|promptly|free|\d[\d,]*|"
    # Sentences that state what a field holds or a call does bind as much as a "must": a backend that
    # leaves `end_time` unset or answers `created` wrongly breaks "sets `end_time`", "true if created".
    r"changes nothing|twice|optionally|spaces|tabs|first|resolv\w*|unresolved|both|survives?|retry|"
    r"by identifier|by name|records?|starts?|ends?|sets|stores?|stored as|as stored|deletes|created|creating|"
    r"replacing|claimed|latest|while|entered|expired|expires|uses|terminal|MAJOR|lower-case|true|false|"
    r"allowed|from now|as written|as it was|as of|after|now|EXECUTION_PHASE_\w+|expected_version|"
    r"conditional)\b"
    r"|^`[\w.]+` (?:of|says) ",  # "`AgentInstance.id` of the agent instance this execution runs", "`error` says which"
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"(])")
_ELEMENT = re.compile(
    r"^\s*(?:(?P<kind>service|message|enum|rpc|oneof)\s+(?P<name>\w+)"
    r"|(?:repeated\s+|optional\s+)?(?:map<[^>]+>|[\w.]+)\s+(?P<field>\w+)\s*=\s*\d+"
    r"|(?P<value>[A-Z][A-Z0-9_]*)\s*=\s*\d+)"
)


@dataclass(frozen=True)
class Sentence:
    id: str
    element: str
    text: str


def _units(comment: list[str]) -> list[str]:
    """A comment's sentences: paragraphs and list items split at sentence ends; an indented block whole."""
    units: list[tuple[bool, list[str]]] = []
    current: list[str] = []
    in_block = False
    for line in [*comment, ""]:
        block_line = line.startswith("    ")
        if (not line.strip() or line.startswith("- ") or block_line != in_block) and current:
            units.append((in_block, current))
            current = []
        in_block = block_line
        if line.strip():
            current.append(line.strip())
    sentences: list[str] = []
    for block, unit in units:
        if block:
            sentences.append(" / ".join(" ".join(row.split()) for row in unit))
            continue
        text = " ".join(unit).removeprefix("- ")
        sentences += [s.strip() for s in _SENTENCE_END.split(text) if s.strip() and not s.strip().endswith(":")]
    return sentences


def _comments(path: Path) -> list[tuple[str, list[str]]]:
    """(element, comment lines) for every comment block of one proto file."""
    blocks: list[tuple[str, list[str]]] = []
    scopes: list[str | None] = []
    pending: list[str] = []
    detached: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("//"):
            pending.append(line[2:].removeprefix(" "))
            continue
        if not line:
            if pending:  # a comment followed by a blank line belongs to the file, not to an element
                detached, pending = [*detached, *pending, ""], []
            continue
        match = _ELEMENT.match(line)
        name = (match["name"] or match["field"] or match["value"]) if match else None
        if detached:
            blocks.append((path.name, detached))
            detached = []
        if pending:
            blocks.append((".".join(s for s in [*scopes, name] if s) or path.name, pending))
            pending = []
        if line.endswith("{"):
            scopes.append(None if match is None or match["kind"] == "oneof" else name)
        elif line.startswith("}") and scopes:
            scopes.pop()
    if detached or pending:
        blocks.append((path.name, [*detached, *pending]))
    return blocks


def normative_sentences(proto_dir: Path = PROTO_DIR) -> list[Sentence]:
    """Every normative sentence of the contract, in file and comment order."""
    order = ["backend_service", "request_response", "execution", "agent_instance", "secret", "backend_info"]
    files = sorted(proto_dir.glob("*.proto"), key=lambda p: (order.index(p.stem) if p.stem in order else 99, p.name))
    found: list[Sentence] = []
    seen: set[str] = set()
    for path in files:
        for element, comment in _comments(path):
            for text in _units(comment):
                if not _NORMATIVE.search(text):
                    continue
                digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:6]
                sentence_id = f"{element}#{digest}"
                while sentence_id in seen:
                    sentence_id += "'"
                seen.add(sentence_id)
                found.append(Sentence(sentence_id, element, text))
    return found


_ENTRY = re.compile(r"^- `(?P<id>[^`]+)` ")
_MAPPING = re.compile(r"^  (?:- )?(?P<kind>tests|untested):(?P<rest>.*)$")


def read_matrix(path: Path = MATRIX) -> dict[str, tuple[str, str]]:
    """``{sentence id: ("tests" | "untested", text)}`` as written in the matrix file."""
    mappings: dict[str, tuple[str, str]] = {}
    current = None
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = _ENTRY.match(line)
        if entry:
            current = entry["id"]
            continue
        mapping = _MAPPING.match(line)
        if mapping and current is not None:
            rest = mapping["rest"].strip()
            mappings[current] = (mapping["kind"], rest.replace("`", "") if mapping["kind"] == "tests" else rest)
            current = None
    return mappings


_HEADER = """# Traceability: the contract's sentences and the tests that check them

Generated from the comments of `proto/stigmer/backend/v1/*.proto` by
`python -m stigmer_backend.conformance.traceability --write`; only the `tests:` lines
are written by hand. Each normative sentence (a failure code, a limit, an
order, a default, "never", "exactly", ...) has a stable id, `Element#hash`
of its text, and the conformance test ids (fnmatch patterns over
`area/RPC/check[/case]`) that fail when a backend breaks it. `untested:` marks
the few sentences the suite cannot observe through the service, with why.
The repository's tests fail when a sentence has no line here or a line names
no existing test. See [CONFORMANCE.md](../CONFORMANCE.md).
"""


def render(sentences: list[Sentence], mappings: dict[str, tuple[str, str]]) -> str:
    lines = [_HEADER]
    element = None
    for sentence in sentences:
        if sentence.element != element:
            element = sentence.element
            lines += ["", f"## {element}", ""]
        kind, rest = mappings.get(sentence.id, ("tests", ""))
        lines.append(f"- `{sentence.id}` {sentence.text}")
        shown = " ".join(f"`{pattern}`" for pattern in rest.split()) if kind == "tests" else rest
        lines.append(f"  - {kind}: {shown}".rstrip())
    return "\n".join(lines) + "\n"


def problems(sentences: list[Sentence], mappings: dict[str, tuple[str, str]], test_ids: set[str]) -> list[str]:
    """Why the matrix does not cover the contract (empty when it does)."""
    found: list[str] = []
    for sentence in sentences:
        kind, rest = mappings.get(sentence.id, ("tests", ""))
        if not rest:
            found.append(f"{sentence.id} has no test: {sentence.text!r}")
            continue
        if kind == "untested":
            continue
        for pattern in rest.split():
            if not any(fnmatch.fnmatchcase(test_id, pattern) for test_id in test_ids):
                found.append(f"{sentence.id}: no conformance test matches {pattern!r}")
    known = {s.id for s in sentences}
    found += [f"{stale} is in the matrix but no longer in the proto" for stale in mappings if stale not in known]
    return found


def suite_test_ids() -> set[str]:
    """Every conformance test id of the suite, by collecting it (no target is opened)."""
    import pytest

    from .ids import conformance_id
    from .suite import SUITE_DIR

    class Collector:
        def __init__(self) -> None:
            self.ids: set[str] = set()

        def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
            self.ids.update(conformance_id(item) for item in items)

    collector = Collector()
    args = [str(SUITE_DIR), "--collect-only", "-q", "-c", "/dev/null", "--rootdir", str(SUITE_DIR),
            "-p", "no:cacheprovider", "-o", "python_files=*.py",
            "--stigmer-target", "stigmer_backend.backends.memory:MemoryBackend",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "-p", "no:asyncio"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = pytest.main(args, plugins=[collector])
    if code not in (0, 5):
        raise RuntimeError(f"collecting the conformance suite failed (exit code {code}):\n{printed.getvalue()[-3000:]}")
    return collector.ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite TRACEABILITY.md from the proto, keeping mappings")
    parser.add_argument("--check", action="store_true", help="also collect the suite and check every mapping")
    options = parser.parse_args(argv)
    sentences = normative_sentences()
    mappings = read_matrix()
    if options.write:
        MATRIX.write_text(render(sentences, mappings))
        print(f"wrote {MATRIX} ({len(sentences)} sentences)")
    found = problems(sentences, mappings, suite_test_ids()) if options.check else []
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
