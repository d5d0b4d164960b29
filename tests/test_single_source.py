"""Every limit, id prefix and phase number the contract states is written once, and imported elsewhere.

A copy drifts: a runner that cut error messages to 16,000 characters while the
contract allows 16,384 bytes failed its own reports. So the product code
(``backends/`` outside ``rules/``, ``cli/``, ``server/``, ``runner/``, ``fullstack/``) must not
spell a limit's value, an id prefix, the contract version or a stored phase
number; it imports them from ``stigmer_backend.backends.rules`` or the generated enum.

The conformance suite is left out on purpose: it is a black-box check of the
proto's text and restates the numbers so that a wrong rule cannot pass itself.
"""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest

from stigmer_backend.backends import rules
from stigmer_backend.backends.rules import ids, paging, secret_refs, validation

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("backends", "cli", "server", "runner", "fullstack")
SOURCES = ("backends/rules",)

# Values under 100 (a default of 50, 64 characters) are too common to tell a restated limit from an unrelated number.
LIMITS = {
    name: value
    for module in (validation, paging, secret_refs)
    for name, value in vars(module).items()
    if name.startswith("MAX_") and isinstance(value, int) and not isinstance(value, timedelta) and value >= 100
}
PREFIXES = {"EXECUTION_PREFIX": ids.EXECUTION_PREFIX, "AGENT_INSTANCE_PREFIX": ids.AGENT_INSTANCE_PREFIX}
PHASE_IN_SQL = re.compile(r"\bphase\s*(=|!=|<>|<=|>=|<|>|(NOT\s+)?IN\s*\(|(NOT\s+)?BETWEEN)\s*\d", re.IGNORECASE)
# A regular expression's repeat count, as in [A-Za-z0-9]{1,128}: a length limit spelled inside a pattern.
REPEAT = re.compile(r"\{(\d*),(\d+)\}")

# The same number meaning something else, each with why.
UNRELATED = {
    ("server/startup.py", 128): "the listen backlog",
    ("server/gate.py", 1000): "milliseconds in a second",
    ("backends/encryption/_stores.py", 4096): "the largest file that may be a key file",
    ("server/launch.py", 4096): "bytes read at a time from the server's output",
    ("server/connections.py", 256): "the default cap on open connections",
    ("cli/server.py", 256): "that default again, in --help, which must not import the server",
    ("cli/_output.py", 256): "the end of the range a \\xNN escape can show",
    ("backends/codec/convert.py", 1000): "nanoseconds in a microsecond",
    ("backends/sqlite/_backend.py", 1000): "milliseconds in a second",
}


def _checked_files() -> list[Path]:
    files = []
    for folder in CHECKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith(SOURCES):
                files.append(path)
    return files


def restatements(path: Path) -> list[str]:
    """Each literal in ``path`` that restates a limit, a prefix, the contract version or a phase number."""
    relative = path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            names = [target.id for target in node.targets if isinstance(target, ast.Name) and "CONTRACT" in target.id]
            if names:
                found.append(f"{relative}:{node.lineno}: {names[0]} restates rules.CONTRACT_VERSION")
        if not isinstance(node, ast.Constant):
            continue
        value = node.value
        where = f"{relative}:{node.lineno}"
        if isinstance(value, int) and not isinstance(value, bool):
            names = [name for name, limit in LIMITS.items() if limit == value]
            if names and (relative, value) not in UNRELATED:
                found.append(f"{where}: {value} restates {' or '.join(names)}")
        elif isinstance(value, str):
            names = [name for name, prefix in PREFIXES.items() if value == prefix]
            if names:
                found.append(f"{where}: {value!r} restates ids.{names[0]}")
            if value == rules.CONTRACT_VERSION or value == rules.CONTRACT_VERSION.partition(".")[0] + ".":
                found.append(f"{where}: {value!r} restates rules.CONTRACT_VERSION")
            if PHASE_IN_SQL.search(value):
                found.append(f"{where}: a phase number in SQL; build it from pb.ExecutionPhase")
            for repeat in REPEAT.finditer(value):
                # {0,127} after a first character is a limit of 128 too
                most = int(repeat.group(2))
                names = [name for name, limit in LIMITS.items() if limit in (most, most + 1)]
                if names:
                    found.append(f"{where}: {repeat.group(0)} in a pattern restates {' or '.join(names)}")
    return found


def test_the_checked_code_exists():
    assert len(_checked_files()) > 30
    expected = {"MAX_ERROR_MESSAGE_BYTES", "MAX_SECRET_VALUE_BYTES", "MAX_PAGE_SIZE", "MAX_SECRET_NAME_CHARS"}
    assert expected <= set(LIMITS)


@pytest.mark.parametrize("path", _checked_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_no_limit_prefix_or_phase_is_restated(path):
    assert restatements(path) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("cut = text[:16_384]", "restates MAX_ERROR_MESSAGE_BYTES"),
        ("size = 1000", "restates MAX_PAGE_SIZE"),
        ("is_agent = ref.startswith('agi_')", "restates ids.AGENT_INSTANCE_PREFIX"),
        ("sql = 'SELECT id FROM executions WHERE phase = 2'", "a phase number in SQL"),
        ("sql = 'SELECT id FROM executions WHERE phase >= 3'", "a phase number in SQL"),
        ("sql = 'SELECT id FROM executions WHERE e.phase NOT IN (3, 4, 5)'", "a phase number in SQL"),
        ("sql = 'SELECT id FROM executions WHERE phase <> 2'", "a phase number in SQL"),
        ("NAME = re.compile(r'[A-Za-z0-9._:-]{1,128}')", "{1,128} in a pattern restates MAX_TOKEN_CHARS"),
        ("NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,127}')", "{0,127} in a pattern restates MAX_TOKEN_CHARS"),
        ("error = f'must match ^[a-z]{{1,128}}$ in {where}'", "{1,128} in a pattern restates"),
        ("ok = version.startswith('1.')", "restates rules.CONTRACT_VERSION"),
        ("SUPPORTED_CONTRACT_MAJOR = '1'", "SUPPORTED_CONTRACT_MAJOR restates rules.CONTRACT_VERSION"),
    ],
)
def test_a_restatement_is_caught(tmp_path, monkeypatch, source, expected):
    """The check itself: each kind of copy it exists for is reported."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    module = tmp_path / "cli" / "copied.py"
    module.parent.mkdir()
    module.write_text(source + "\n")
    assert any(expected in line for line in restatements(module))
