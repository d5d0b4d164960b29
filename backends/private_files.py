"""Files in ``$STIGMER_HOME`` that only their owner may control: checks before use, exclusive writes.

On a shared machine another local user may have created (squatted) the home,
a file in it, or a symbolic link where a file will be written. So every file
Stigmer reads or writes there is checked as ssh checks ``~/.ssh``: it must
belong to the user running Stigmer, must not be a symbolic link, and must not
be writable (for secrets: not even readable) by group or others. New files
are written to a temporary name opened with ``O_EXCL | O_NOFOLLOW`` (a link
or file planted under that name makes the open fail instead of writing
through it), then renamed over the target. A refusal is one line naming the
file and the fix.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["check_directory", "check_file", "read_private", "write_private"]


def _refuse(problem: str) -> GRPCError:
    return GRPCError(Status.INTERNAL, problem)


def _check(what: str, path: Path, info: os.stat_result, forbidden: int, fix: str) -> None:
    if info.st_uid != os.geteuid():
        raise _refuse(f"{what} {path} belongs to another user (uid {info.st_uid}); refusing to use it")
    mode = stat.S_IMODE(info.st_mode)
    if mode & forbidden:
        kind = "accessible" if forbidden & 0o044 else "writable"
        raise _refuse(f"{what} {path} is {kind} by group or others (mode {mode:04o}); run: chmod {fix} {path}")


def check_directory(path: Path, what: str = "the Stigmer home") -> None:
    """``path`` (followed if a link) belongs to this user and only it may write there."""
    _check(what, path, os.stat(path), 0o022, "700")


def check_file(path: Path, what: str, *, secret: bool = False) -> bool:
    """Whether ``path`` exists; if it does, it must be this user's regular file, never a link.

    :param secret: also refuse a file that group or others may read.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(f"{what} {path} is a symbolic link; refusing to follow it")
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(f"{what} {path} is not a regular file")
    _check(what, path, info, 0o077 if secret else 0o022, "600")
    return True


def read_private(path: Path, what: str, *, secret: bool = False) -> str | None:
    """The text of ``path`` after the checks of ``check_file`` (made on the opened file); None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        if os.path.islink(path):
            raise _refuse(f"{what} {path} is a symbolic link; refusing to follow it") from None
        raise _refuse(f"cannot read {what} {path}: {(error.strerror or str(error)).lower()}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(f"{what} {path} is not a regular file")
        _check(what, path, info, 0o077 if secret else 0o022, "600")
        return file.read().decode("utf-8", errors="replace")


def write_private(path: Path, text: str) -> None:
    """Replaces ``path`` with ``text`` atomically, as a 0600 file of this user, never through a link.

    A crash leaves the old file or the new one, never half of one.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)  # exact, whatever the umask
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # rename replaces a link planted at `path`, never writes through it
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
