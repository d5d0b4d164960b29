"""The CLI hands betterproto2 its version, so starting a command imports no ``importlib.metadata``."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import betterproto2._version
import pytest

from stigmer_backend.cli import _betterproto2_version


def _fresh(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)


def test_the_version_read_from_the_folder_name_is_the_installed_one():
    assert _betterproto2_version.installed_version() == importlib.metadata.version("betterproto2")


@pytest.mark.parametrize(
    ("library", "compiler"),
    [("0.10.0", "0.10.1"), ("0.10.3", "0.10.0"), ("0.10.0", "0.9.4"), ("0.10.0", "0.11.0"), ("0.10.0", "1.10.0")],
)
def test_the_compiler_check_decides_as_betterproto2s_own(monkeypatch, library, compiler):
    monkeypatch.setattr(betterproto2._version, "__version__", library)
    try:
        betterproto2._version.check_compiler_version(compiler)
        theirs = None
    except ImportError as error:
        theirs = error
    if theirs is None:
        _betterproto2_version.check_compiler_version(library, compiler)
    else:
        with pytest.raises(ImportError, match=f"betterproto2_compiler {compiler}.*betterproto2 {library}"):
            _betterproto2_version.check_compiler_version(library, compiler)


def test_with_it_the_generated_code_imports_without_importlib_metadata():
    result = _fresh(
        """
        import sys
        from stigmer_backend.cli import _betterproto2_version
        assert _betterproto2_version.install()
        from stigmer_backend.gen.stigmer.backend import v1 as pb
        import betterproto2
        assert bytes(pb.GetExecutionRequest(execution_id="exe_1"))  # betterproto2 works as ever
        try:
            betterproto2.check_compiler_version("0.9.0")  # code from another compiler is still refused
        except ImportError:
            pass
        else:
            raise AssertionError("a 0.9 compiler's code was accepted")
        print(betterproto2.__version__, "importlib.metadata" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [importlib.metadata.version("betterproto2"), "False"]


def test_once_betterproto2_is_imported_it_stays_as_it_is():
    assert "betterproto2" in sys.modules
    before = sys.modules["betterproto2._version"]
    assert _betterproto2_version.install() is False
    assert sys.modules["betterproto2._version"] is before


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (["betterproto2-9.8.7.dist-info"], "9.8.7"),
        ([], None),  # not installed from a wheel: betterproto2 reads its version itself
        (["betterproto2-9.8.7.dist-info", "betterproto2-9.8.6.dist-info"], None),  # which one is it?
    ],
)
def test_only_one_dist_info_folder_beside_the_package_is_believed(tmp_path: Path, folders, expected):
    (tmp_path / "betterproto2").mkdir()
    (tmp_path / "betterproto2" / "__init__.py").write_text("")
    for folder in folders:
        (tmp_path / folder).mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = _fresh(
        """
        from stigmer_backend.cli import _betterproto2_version
        print(_betterproto2_version.installed_version(), _betterproto2_version.install())
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(expected), str(expected is not None)]
