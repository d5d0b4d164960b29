"""The contract's guard rails: lint, format, breaking changes, and codegen drift."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, toolchain_env

BASELINE = REPO / "proto" / "baseline.binpb"


def run(cmd: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=toolchain_env(), capture_output=True, text=True, timeout=120)


def test_buf_lint_passes_with_standard_rules(buf):
    result = run([buf, "lint"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_config_allows_no_exceptions():
    config = (REPO / "buf.yaml").read_text()
    assert "disallow_comment_ignores: true" in config
    assert "STANDARD" in config
    assert "COMMENTS" in config, "every element of the contract must stay documented"
    for loophole in ("except:", "ignore:", "ignore_only:"):
        assert loophole not in config


def test_protos_are_buf_formatted(buf):
    result = run([buf, "format", "--exit-code", "--diff"])
    assert result.returncode == 0, "run `buf format -w`:\n" + result.stdout + result.stderr


def test_no_breaking_change_against_released_baseline(buf):
    result = run([buf, "breaking", "--against", str(BASELINE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_renumbered_field_is_caught_as_breaking(buf, tmp_path):
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    execution_proto = tmp_path / "proto/stigmer/backend/v1/execution.proto"
    text = execution_proto.read_text()
    assert "  int64 version = 6;" in text
    execution_proto.write_text(text.replace("  int64 version = 6;", "  int64 version = 16;", 1))

    result = run([buf, "breaking", "--against", str(BASELINE)], cwd=tmp_path)

    assert result.returncode != 0
    assert "version" in result.stdout + result.stderr


def test_generated_code_matches_a_fresh_generation(buf, tmp_path):
    result = run([buf, "generate", "--output", str(tmp_path)])
    assert result.returncode == 0, result.stdout + result.stderr
    differences = tree_differences(REPO / "gen", tmp_path / "gen")
    assert not differences, "gen/ is stale; run `buf generate`: " + ", ".join(differences)


def tree_differences(committed: Path, fresh: Path) -> list[str]:
    """Relative paths that differ between two trees, ignoring bytecode caches."""

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}

    ours, theirs = files(committed), files(fresh)
    changed = {f for f in ours & theirs if not filecmp.cmp(committed / f, fresh / f, shallow=False)}
    return sorted((ours ^ theirs) | changed)
