"""The SQLite backend: Stigmer's zero-setup local default.

from stigmer_backend.backends.sqlite import SqliteBackend

async with SqliteBackend() as backend:          # $STIGMER_HOME/local.db
    info = await backend.get_backend_info(pb.GetBackendInfoRequest())
"""

from ._backend import SqliteBackend, default_database_path

__all__ = ["SqliteBackend", "default_database_path"]
