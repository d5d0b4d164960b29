"""A `STIGMER_HOME` that another local user controls is refused, and nothing is written through it.

Run as a user would: the real `stigmer` command, a real server. Tests that
need a file owned by another user create one with `chown`, which needs root;
without root they are reported as skipped, never as passed.
"""

from __future__ import annotations

import os
import stat

import pytest

from tests.builders import one_line_error

from .test_login import cli  # noqa: F401  (fixture)

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


@needs_root
def test_a_home_owned_by_another_user_is_refused(cli, home):  # noqa: F811
    os.chown(home, NOBODY, NOBODY)
    line = one_line_error(cli("execution", "list"))
    assert f"the Stigmer home {home} belongs to another user (uid {NOBODY})" in line
    assert not (home / "local.db").exists()


def test_a_home_others_may_write_into_is_refused(cli, home):  # noqa: F811
    home.chmod(0o777)
    line = one_line_error(cli("execution", "list"))
    assert f"the Stigmer home {home} is writable by group or others (mode 0777); run: chmod 700 {home}" in line
    assert not (home / "local.db").exists()


@needs_root
def test_a_local_db_owned_by_another_user_is_refused(cli, home):  # noqa: F811
    (home / "local.db").touch(mode=0o666)
    os.chown(home / "local.db", NOBODY, NOBODY)
    line = one_line_error(cli("execution", "list"))
    assert f"the database {home / 'local.db'} belongs to another user (uid {NOBODY})" in line
    assert (home / "local.db").stat().st_size == 0


def test_login_never_writes_the_token_through_a_planted_link(cli, served, token, home, tmp_path):  # noqa: F811
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # Links at the final name and at the old fixed temporary names: none may be written through.
    for name in ("token", ".token.tmp", "config.json", "config.json.tmp"):
        (home / name).symlink_to(victim)
    result = cli("login", "--endpoint", served.endpoint, "--plaintext", stdin=token)
    assert victim.read_text() == "precious\n"
    assert token not in victim.read_text()
    if result.returncode == 0:  # the links were replaced by the user's own private files
        for name in ("token", "config.json"):
            info = os.lstat(home / name)
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    else:
        assert "symbolic link" in one_line_error(result)


@needs_root
def test_a_token_file_owned_by_another_user_is_not_read(cli, served, token, home):  # noqa: F811
    assert cli("login", "--endpoint", served.endpoint, "--plaintext", stdin=token).returncode == 0
    os.chown(home / "token", NOBODY, NOBODY)
    line = one_line_error(cli("execution", "list"))
    assert f"the token file {home / 'token'} belongs to another user (uid {NOBODY})" in line
