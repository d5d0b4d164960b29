"""Bad files and failing disks: a clear ``GRPCError`` naming the file, and nothing half-written."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb

from ._support import IS_ROOT, WORKERS, agent_request, file_bytes, finish, raw, read_message, seed, start_worker


def assert_clear_error(error: GRPCError, path: Path, status: Status, *words: str) -> None:
    """The documented code, the file's path, and no sqlite3 exception chained for a traceback."""
    assert error.status == status, error
    assert str(path) in error.message, error.message
    for word in words:
        assert word in error.message, error.message
    assert error.__cause__ is None and error.__suppress_context__


# -- files that are not usable databases --------------------------------------------------------


def test_a_file_that_is_not_a_database_is_refused_untouched(db_path):
    db_path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = file_bytes(db_path)
    with pytest.raises(GRPCError) as caught:
        SqliteBackend(db_path)
    assert_clear_error(caught.value, db_path, Status.INTERNAL, "not a SQLite database")
    assert file_bytes(db_path) == before  # no -wal or -shm either


async def test_a_damaged_database_is_reported_as_damaged(db_path):
    await seed(db_path, executions=200)
    with db_path.open("r+b") as f:  # scribble over pages in the middle of the file
        f.seek(3 * 4096)
        f.write(b"\xa5" * (4 * 4096))
    with pytest.raises(GRPCError) as caught:
        async with SqliteBackend(db_path) as backend:
            await backend.list_executions(pb.ListExecutionsRequest(page_size=1000))
    assert_clear_error(caught.value, db_path, Status.INTERNAL, "damaged")


def test_a_missing_directory_is_a_clear_error(tmp_path):
    path = tmp_path / "no-such-directory" / "local.db"
    with pytest.raises(GRPCError) as caught:
        SqliteBackend(path)
    assert_clear_error(caught.value, path, Status.INTERNAL, "cannot open")
    assert not path.parent.exists()


# -- read-only files ------------------------------------------------------------------------------
#
# A read-only file is refused when opened, before anything is written. Root ignores permission
# bits, so the same refusal is shown three ways: permission bits (non-root), the immutable
# attribute (root; needs a file system with chattr support), and another user (root switches to
# "nobody" in a forked child).


def _try_open_and_write(path: Path) -> dict:
    """Where opening and writing ``path`` fails: ``{"stage": "open"|"write", "status", "message"}``."""
    try:
        backend = SqliteBackend(path)
    except GRPCError as error:
        return {"stage": "open", "status": error.status.name, "message": error.message}

    async def write() -> dict:
        try:
            await backend.apply_agent_instance(agent_request("another"))
            return {"stage": "write", "status": "OK", "message": ""}
        except GRPCError as error:
            return {"stage": "write", "status": error.status.name, "message": error.message}
        finally:
            await backend.aclose()

    return asyncio.run(write())


def _as_nobody(path: Path) -> dict:
    """``_try_open_and_write`` in a forked child running as user and group 65534."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write_end, "w") as out:
                out.write(json.dumps(_try_open_and_write(path)))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0 and output, "the child running as nobody failed"
    return json.loads(output)


@pytest.mark.parametrize("mechanism", ["permissions", "immutable", "other_user"])
async def test_a_read_only_file_is_refused_before_anything_is_written(mechanism, tmp_path):
    if mechanism == "other_user":
        if not IS_ROOT:
            pytest.skip("switching to another user needs root (the 'permissions' case covers non-root)")
        # The directories of tmp_path are private to root; nobody needs a path it may traverse.
        directory = Path(tempfile.mkdtemp(prefix="stigmer-ro-"))
        directory.chmod(0o755)
    else:
        directory = tmp_path
    path = directory / "local.db"
    try:
        await seed(path, executions=3)
        if mechanism == "permissions":
            if IS_ROOT:
                pytest.skip("root writes through permission bits (the 'immutable' and 'other_user' cases cover root)")
            path.chmod(0o400)
        elif mechanism == "immutable":
            if not IS_ROOT:
                pytest.skip("setting the immutable attribute needs root (the 'permissions' case covers non-root)")
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"this file system does not support chattr +i: {done.stderr.strip()}")
        else:
            path.chmod(0o444)  # readable by nobody, writable only by its owner, root
        before = file_bytes(path)
        outcome = _as_nobody(path) if mechanism == "other_user" else _try_open_and_write(path)
        assert outcome["stage"] == "open", outcome
        assert outcome["status"] == "INTERNAL", outcome
        assert str(path) in outcome["message"] and "read-only" in outcome["message"], outcome
        assert file_bytes(path) == before
    finally:
        if mechanism == "immutable":
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        if path.exists():
            path.chmod(0o600)
        if mechanism == "other_user":
            shutil.rmtree(directory)


# -- a disk that fills up ---------------------------------------------------------------------


def _state_is_unchanged(report: dict, after: str = "after") -> None:
    """The failed writes left no trace: same rows, same history, same version, file intact."""
    assert report["before"]["integrity"] == "ok"
    assert report[after] == report["before"], report
    assert report["version_after_failures"] == report["version_before"]


def _mount_namespace_command(mount_point: Path) -> list[str] | None:
    """``unshare`` arguments giving a private mount namespace in which we may mount, or None."""
    if shutil.which("unshare") is None:
        return None
    for command in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        probe = subprocess.run(
            [*command, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1"', "sh", str(mount_point)], capture_output=True
        )
        if probe.returncode == 0:
            return command
    return None


def test_a_full_disk_is_resource_exhausted_and_writes_nothing(tmp_path):
    """A real ENOSPC: a 2 MiB tmpfs, mounted in a private mount namespace, filled to the last byte."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    command = _mount_namespace_command(mount_point)
    if command is None:
        pytest.skip("cannot mount a small tmpfs here (no unshare, or no mount namespaces for this user)")
    script = 'mount -t tmpfs -o size=2m tmpfs "$1" && exec "$2" "$3" full_disk "$4"'
    config = json.dumps({"dir": str(mount_point)})
    done = subprocess.run(
        [*command, "sh", "-c", script, "sh", str(mount_point), sys.executable, str(WORKERS), config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    path = mount_point / "local.db"
    for outcome in report["outcomes"]:
        assert outcome["status"] == "RESOURCE_EXHAUSTED", outcome
        assert str(path) in outcome["message"] and "full" in outcome["message"], outcome
    # As seen by another connection while the disk was still full, and by the backend itself.
    _state_is_unchanged(report, after="during")
    # Once there is room again the same backend writes normally, on top of the last committed state.
    assert report["version_recovered"] == report["version_before"] + 1
    assert report["after"] == {
        **report["before"],
        "history": report["before"]["history"] + 1,
        "versions": str(report["version_recovered"]),
    }


def test_a_write_cut_short_by_the_file_size_limit_is_a_clear_error_and_writes_nothing(db_path):
    """RLIMIT_FSIZE (with SIGXFSZ ignored) fails writes part-way through extending the WAL.

    The kernel reports EFBIG, which SQLite reports as an I/O error (SQLITE_IOERR_WRITE), not as
    SQLITE_FULL: so this is INTERNAL "disk I/O error", not RESOURCE_EXHAUSTED.
    """
    worker = start_worker("file_size_limit", {"db": str(db_path)})
    report = read_message(worker)
    finish(worker)
    for outcome in report["outcomes"]:
        assert outcome["status"] == "INTERNAL", outcome
        assert str(db_path) in outcome["message"] and "I/O error" in outcome["message"], outcome
    _state_is_unchanged(report)
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM executions WHERE request_id = 'too-big'").fetchone()[0] == 0
