"""A third party's first step: a backend that answers GetBackendInfo and nothing else (UNIMPLEMENTED)."""

from __future__ import annotations

from stigmer_backend.gen.stigmer.backend import v1 as pb


class StubBackend(pb.BackendServiceBase):
    async def get_backend_info(self, message: pb.GetBackendInfoRequest) -> pb.GetBackendInfoResponse:
        return pb.GetBackendInfoResponse(backend_kind="stub", backend_version="0.1", contract_version="1.0")
