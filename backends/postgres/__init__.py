"""The PostgreSQL backend: one database shared by many ``stigmer server`` replicas.

from stigmer_backend.backends.postgres import PostgresBackend

async with PostgresBackend("postgresql://stigmer@db.internal/stigmer") as backend:
    info = await backend.get_backend_info(pb.GetBackendInfoRequest())

Needs the ``postgres`` extra (``pip install 'stigmer-backend[postgres]'``).
"""

try:
    import psycopg_pool  # noqa: F401  (and psycopg, which it needs)
except ImportError as error:
    needed = "the PostgreSQL backend needs psycopg: pip install 'stigmer-backend[postgres]'"
    raise ImportError(needed, name=error.name) from error

from ._backend import PostgresBackend

__all__ = ["PostgresBackend"]
