"""The cloud backend: ``BackendService`` at a remote endpoint, over gRPC.

from stigmer_backend.backends.cloud import CloudBackend

async with CloudBackend("stigmer.example.com:443", token=token) as backend:
    info = await backend.get_backend_info(pb.GetBackendInfoRequest())

Same methods, same status codes as ``SqliteBackend``; see ``CloudBackend``
for TLS, deadlines and retries, ``credentials`` for where ``stigmer login``
keeps the token.
"""

from ._backend import DEFAULT_TIMEOUT, RPC_NAMES, CloudBackend, client_ssl_context
from .retries import RetryPolicy

__all__ = ["DEFAULT_TIMEOUT", "RPC_NAMES", "CloudBackend", "RetryPolicy", "client_ssl_context"]
