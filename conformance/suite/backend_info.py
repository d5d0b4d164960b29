"""`GetBackendInfo`: what the backend says it is."""

from __future__ import annotations

from stigmer_backend.conformance.client import Client
from stigmer_backend.gen.stigmer.backend import v1 as pb


class TestGetBackendInfo:
    def test_reports_contract_revision_1(self, client: Client) -> None:
        """`GetBackendInfoResponse.contract_version` is "MAJOR.MINOR" of this contract (1.x)."""
        info = client.get_backend_info(pb.GetBackendInfoRequest())
        major, _, minor = info.contract_version.partition(".")
        assert major == "1" and minor.isdigit(), info.contract_version

    def test_reports_a_lower_case_backend_kind(self, client: Client) -> None:
        """`GetBackendInfoResponse.backend_kind` is a short lower-case name."""
        kind = client.get_backend_info(pb.GetBackendInfoRequest()).backend_kind
        assert kind and kind == kind.lower() and " " not in kind

    def test_capabilities_are_defined_and_unique(self, client: Client) -> None:
        """`GetBackendInfoResponse.capabilities`: each a defined `Capability`, at most once, never UNSPECIFIED."""
        capabilities = list(client.get_backend_info(pb.GetBackendInfoRequest()).capabilities)
        assert len(capabilities) == len(set(capabilities))
        defined = set(pb.Capability) - {pb.Capability.UNSPECIFIED}
        assert set(capabilities) <= defined
