"""What ``GetBackendInfo`` answers: the contract revision implemented here, and this package's version."""

from __future__ import annotations

from collections.abc import Iterable

from stigmer_backend.gen.stigmer.backend import v1 as pb

from . import CONTRACT_VERSION

__all__ = ["backend_info", "package_version"]


def package_version() -> str:
    """The installed ``stigmer-backend`` distribution's version, or ``unknown`` when run from a bare tree."""
    from importlib.metadata import PackageNotFoundError, version  # costly to import; few calls need it

    try:
        return version("stigmer-backend")
    except PackageNotFoundError:
        return "unknown"


def backend_info(
    kind: str, capabilities: Iterable[pb.Capability], version: str | None = None
) -> pb.GetBackendInfoResponse:
    return pb.GetBackendInfoResponse(
        contract_version=CONTRACT_VERSION,
        backend_kind=kind,
        backend_version=package_version() if version is None else version,
        capabilities=list(capabilities),
    )
