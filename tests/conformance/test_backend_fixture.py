"""A third party's own ``backend`` fixture is the backend under test: no target, capabilities asked of it.

The run is a separate pytest process in a fresh directory with only a
``conftest.py`` and a test module subclassing the suite's classes, as in
CONFORMANCE.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import toolchain_env

CONFTEST = '''
import pytest

from stigmer_backend.backends.memory import MemoryBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

OPENED = []


class ThirdPartyBackend(MemoryBackend):
    """Reports no optional capability, so the secret tests must be skipped as optional."""

    kind = "third-party"

    async def get_backend_info(self, message):
        info = await super().get_backend_info(message)
        info.capabilities = []
        return info


@pytest.fixture
def backend():
    OPENED.append(ThirdPartyBackend())
    return OPENED[-1]


def pytest_sessionfinish(session):
    (session.config.rootpath / "opened.txt").write_text(str(len(OPENED)))
'''

TESTS = """
from stigmer_backend.conformance.suite import executions, secrets

class TestThirdPartyCreateExecution(executions.TestCreateExecution):
    pass


class TestThirdPartyPutSecret(secrets.TestPutSecret):
    pytestmark = secrets.pytestmark
"""


def test_a_conftest_backend_fixture_is_the_backend_under_test(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (tmp_path / "test_third_party.py").write_text(textwrap.dedent(TESTS))
    report = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--stigmer-backend-fixture", "--stigmer-json-report", str(report),
         "-p", "no:cacheprovider", "-q", "-rs", "test_third_party.py"],
        cwd=tmp_path, env=toolchain_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    summary = json.loads(report.read_text())
    assert summary["target"] == "backend fixture" and summary["backend_kind"] == "third-party", summary
    assert summary["totals"]["passed"] >= 5 and "failed" not in summary["totals"], summary
    assert set(summary["categories"]) == {"test_third_party"}
    assert summary["totals"]["skipped"] >= 1 and "does not report CAPABILITY_SECRETS" in output
    assert int((tmp_path / "opened.txt").read_text()) == summary["totals"]["passed"] + summary["totals"]["skipped"]


def test_without_a_backend_fixture_the_run_says_what_is_missing(tmp_path):
    (tmp_path / "test_third_party.py").write_text(textwrap.dedent(TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--stigmer-backend-fixture", "-p", "no:cacheprovider", "-q",
         "test_third_party.py"],
        cwd=tmp_path, env=toolchain_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "fixture 'backend' not found" in result.stdout
