"""A ``SqliteBackend`` whose every read runs on its read connection: a conformance target.

Its storage thread always reports a call queued, as while a write waits there
for another process's lock, so each read goes to the read connection, while
writes still run on the one connection. The conformance suite run against it
(``test_read_connection.py``) checks that reads there answer as the contract
says, each read after an acknowledged write included.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from stigmer_backend.backends.encryption import MasterKeySource
from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.backends.sqlite._thread import StorageThread

REPORT = "STIGMER_TEST_READS_ASIDE_REPORT"  # where the number of reads the read connection answered is written


class _AlwaysQueued(StorageThread):
    @property
    def queued(self) -> int:
        return super().queued + 1  # what the backend sees; the thread itself still runs idle calls inline


class ReadsAside(SqliteBackend):
    def __init__(self, directory: str) -> None:
        super().__init__(
            Path(directory) / "conformance.db", master_key=MasterKeySource(directory, environ={}, keychain=None)
        )
        self._storage.__class__ = _AlwaysQueued
        self._directory = directory

    async def aclose(self) -> None:
        await super().aclose()
        Path(os.environ[REPORT]).write_text(str(self._reads.answers))
        shutil.rmtree(self._directory, ignore_errors=True)


def factory() -> ReadsAside:
    return ReadsAside(tempfile.mkdtemp(prefix="stigmer-reads-aside-"))
