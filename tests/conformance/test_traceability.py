"""Every normative sentence of the proto maps to conformance tests that exist (``conformance/TRACEABILITY.md``)."""

from __future__ import annotations

import subprocess
import sys

from stigmer_backend.conformance import traceability
from tests.conftest import REPO

REGENERATE = "python -m stigmer_backend.conformance.traceability --write"


def test_the_matrix_lists_exactly_the_sentences_of_the_proto():
    """A sentence added, changed or removed in proto/ shows up here until the matrix is regenerated and mapped."""
    sentences = traceability.normative_sentences()
    committed = traceability.MATRIX.read_text()
    expected = traceability.render(sentences, traceability.read_matrix())
    assert committed == expected, f"conformance/TRACEABILITY.md is out of date with proto/: run {REGENERATE}"


def test_every_sentence_maps_to_existing_conformance_tests():
    """No sentence without a test (or a reason it cannot be tested); no mapping to a test that does not exist."""
    result = subprocess.run(
        [sys.executable, "-m", "stigmer_backend.conformance.traceability", "--check"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (
        "conformance/TRACEABILITY.md does not cover the contract; add the conformance test ids after each "
        f"sentence's 'tests:':\n{result.stderr[-4000:]}"
    )


def test_new_sentences_are_found_and_need_a_mapping(tmp_path):
    """The extractor sees a new normative sentence, gives it an id, and reports it unmapped."""
    proto = tmp_path / "extra.proto"
    proto.write_text(
        'syntax = "proto3";\n\n// Thing is a thing.\nmessage Thing {\n'
        "  // The label. At most 12 bytes; longer is `INVALID_ARGUMENT`.\n  string label = 1;\n}\n"
    )
    sentences = traceability.normative_sentences(tmp_path)
    assert [(s.element, s.text) for s in sentences] == [
        ("Thing.label", "At most 12 bytes; longer is `INVALID_ARGUMENT`.")
    ]
    found = traceability.problems(sentences, {}, {"area/check"})
    assert found == [f"{sentences[0].id} has no test: 'At most 12 bytes; longer is `INVALID_ARGUMENT`.'"]
    mapped = {sentences[0].id: ("tests", "area/no_such_check")}
    assert (
        "no conformance test matches 'area/no_such_check'"
        in traceability.problems(sentences, mapped, {"area/check"})[0]
    )


def test_sentences_that_state_what_a_call_does_are_normative():
    """A sentence binds without "must": a backend leaving `end_time` unset breaks "sets `end_time`"."""
    found = {s.text for s in traceability.normative_sentences()}
    binding = [
        "A terminal phase ends the lease and sets `end_time`.",
        "For a lease expiry this is `lease_expire_time` of the expired lease.",
        "True if this call created the execution; false if it already existed.",
        "With `phase` `EXECUTION_PHASE_RUNNING`: how long the lease lasts from now.",
        "Everything acknowledged survives a restart of the backend process.",
        "Literal text: secret references here are not resolved (instructions are sent to the model provider).",
        'The backend itself uses "LEASE_EXPIRED" when a runner\'s lease ends.',
        "`AgentInstance.id` of the agent instance this execution runs.",
        "`ExecutionStatus.error` says which.",
    ]
    assert [text for text in binding if text not in found] == []
    for describing in (
        "GetExecutionRequest names one execution.",
        "ModelConfig says which model an agent calls and how to reach it.",
    ):
        assert describing not in found, "a sentence describing an element binds nothing"
