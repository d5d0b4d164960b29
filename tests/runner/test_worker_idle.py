"""An idle runner asks for work at a cadence that backs off: never a busy loop."""

from __future__ import annotations

import time

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.runner.worker import Worker
from tests.secrets.workload import file_source

LISTS = 8


class CountedListing(SqliteBackend):
    """The real SQLite backend, noting when it is listed; stops the worker after ``LISTS`` lists."""

    worker: Worker

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.listed: list[float] = []

    async def list_executions(self, message):
        self.listed.append(time.monotonic())
        if len(self.listed) == LISTS:
            self.worker.stop()
        return await super().list_executions(message)


async def test_an_idle_worker_lists_less_and_less_often(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    async with CountedListing(home / "local.db", master_key=file_source(home)) as backend:
        backend.worker = Worker(backend, min_idle=0.05, max_idle=0.4)
        await backend.worker.run()
    gaps = [later - earlier for earlier, later in zip(backend.listed, backend.listed[1:], strict=False)]
    expected = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert len(gaps) == len(expected)
    for gap, least in zip(gaps, expected, strict=True):
        assert gap >= least * 0.95, (gaps, expected)
