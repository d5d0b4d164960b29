"""What every Python backend is: the generated service base, plus a lifecycle.

The interface is not written here: it is ``BackendServiceBase``, generated
from the proto. A backend overrides its RPC methods (``await
backend.create_execution(request)``); the same object can be called
in-process or served over gRPC, and a remote backend presents the same
methods. This module adds only what the proto cannot say: closing.
"""

from __future__ import annotations

from typing import Self

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["Backend"]


class Backend(pb.BackendServiceBase):
    """Base class of every Python backend; use it as ``async with``."""

    async def aclose(self) -> None:
        """Releases files, connections and background tasks. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
