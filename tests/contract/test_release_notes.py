"""CHANGELOG.md keeps up with the versions the code reports and with the contract's files."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

from google.protobuf import descriptor_pb2

from stigmer_backend.backends.rules import CONTRACT_VERSION
from stigmer_backend.conformance import SUITE_VERSION
from tests.conftest import REPO, toolchain_env

UNRELEASED = "Unreleased"
NOTHING = "Nothing yet."


def changelog_section(title: str) -> dict[str, str]:
    """The ``### `` entries of one ``## `` section, in order: heading's first word -> body."""
    text = (REPO / "CHANGELOG.md").read_text()
    sections = {part.split("\n", 1)[0].strip(): part for part in re.split(r"^## ", text, flags=re.M)[1:]}
    assert title in sections, f"CHANGELOG.md has no section '## {title}'"
    entries = re.split(r"^### ", sections[title], flags=re.M)[1:]
    return {entry.split(None, 1)[0]: entry.split("\n", 1)[1].strip() for entry in entries}


def newest_release(title: str) -> str:
    return next(version for version in changelog_section(title) if version != UNRELEASED)


def test_each_section_opens_with_unreleased():
    for title in ("Contract", "Package", "Conformance suite"):
        assert next(iter(changelog_section(title))) == UNRELEASED, title


def test_the_newest_contract_release_is_the_version_backends_report():
    assert newest_release("Contract") == CONTRACT_VERSION


def test_the_newest_package_release_or_unreleased_work_matches_pyproject():
    assert newest_release("Package") == importlib.metadata.version("stigmer-backend")


def test_the_newest_suite_release_is_the_version_the_suite_reports():
    assert newest_release("Conformance suite") == SUITE_VERSION


def built_contract(buf: str, root: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    """What the files under ``root`` describe, without comments: what the baseline records."""
    built = tmp_path / "current.binpb"
    result = subprocess.run(
        [buf, "build", "--exclude-source-info", "-o", str(built)],
        cwd=root,
        env=toolchain_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(built.read_bytes())


def released_contract() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString((REPO / "proto/baseline.binpb").read_bytes())


def test_a_contract_change_since_the_baseline_is_in_the_changelog(buf, tmp_path):
    if built_contract(buf, REPO, tmp_path) != released_contract():
        unreleased = changelog_section("Contract")[UNRELEASED]
        assert unreleased not in ("", NOTHING), (
            "proto/ differs from the released baseline: say what changed under '## Contract' / '### Unreleased'"
        )


def test_an_added_field_counts_as_a_change_and_a_comment_does_not(buf, tmp_path):
    shutil.copytree(REPO / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    secret_proto = tmp_path / "proto/stigmer/backend/v1/secret.proto"
    original = secret_proto.read_text()
    unchanged = built_contract(buf, tmp_path, tmp_path)

    secret_proto.write_text(original.replace("message Secret {", "// Reworded.\nmessage Secret {", 1))
    assert built_contract(buf, tmp_path, tmp_path) == unchanged

    secret_proto.write_text(original.replace("message Secret {", "message Secret {\n  // New.\n  string note = 99;", 1))
    assert built_contract(buf, tmp_path, tmp_path) != unchanged
