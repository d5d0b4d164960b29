"""Where Stigmer keeps its local state: ``$STIGMER_HOME``, default ``~/.stigmer``."""

from __future__ import annotations

import os
from pathlib import Path

from grpclib import GRPCError
from grpclib.const import Status

from .private_files import check_directory

__all__ = ["stigmer_home"]


def stigmer_home() -> Path:
    """The state directory, created private (0700) on first use.

    Raises ``GRPCError`` ``INTERNAL`` naming the directory if it cannot be
    created, or if it belongs to another user or others may write into it
    (anyone who can write there can plant the files Stigmer reads).
    """
    home = Path(os.environ.get("STIGMER_HOME") or Path.home() / ".stigmer").expanduser()
    if not home.is_dir():
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            home.chmod(0o700)  # mkdir's mode is filtered by the umask
        except OSError as error:
            raise GRPCError(Status.INTERNAL, f"cannot create the Stigmer home {home}: {error.strerror}") from None
    check_directory(home)
    return home
