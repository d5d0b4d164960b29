"""The contract revision the Python rules report is the one the proto files describe."""

import re

from stigmer_backend.backends.rules import CONTRACT_VERSION
from tests.conftest import REPO


def test_rules_report_the_revision_the_proto_describes():
    text = (REPO / "proto/stigmer/backend/v1/request_response.proto").read_text()
    described = re.search(r'The files in this package describe revision "([0-9]+\.[0-9]+)"', text)
    assert described, "request_response.proto no longer states its revision"
    assert described.group(1) == CONTRACT_VERSION
