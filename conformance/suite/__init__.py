"""The suite's test modules, one per contract area (collected by the plugin's run)."""

from pathlib import Path

# The folder pytest collects for a run.
SUITE_DIR = Path(__file__).parent

# The suite's own version, reported in every run's summary; equal to the newest "Conformance suite" release in
# CHANGELOG.md (tests/contract/test_release_notes.py).
SUITE_VERSION = "1.0.0"
