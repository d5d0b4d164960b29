"""Parameter tables shared by the suite, each written once from the proto's text.

Deliberately not imported from any implementation: the suite restates the
contract so that a backend's own tables cannot vouch for themselves.
"""

from __future__ import annotations

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["LEGAL_TRANSITIONS", "PHASES", "TERMINAL", "TRANSITION_CASES"]

Phase = pb.ExecutionPhase

PHASES = [Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED]
TERMINAL = {Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}

# `ExecutionPhase` in execution.proto: the only transitions.
LEGAL_TRANSITIONS = {
    (Phase.PENDING, Phase.RUNNING),
    (Phase.PENDING, Phase.CANCELLED),
    (Phase.RUNNING, Phase.RUNNING),
    (Phase.RUNNING, Phase.SUCCEEDED),
    (Phase.RUNNING, Phase.FAILED),
    (Phase.RUNNING, Phase.CANCELLED),
}

# Every (from, to) pair, with its id: "SUCCEEDED->RUNNING/rejected".
TRANSITION_CASES = [
    (start, to, (start, to) in LEGAL_TRANSITIONS, f"{start.name}->{to.name}/{'accepted' if (start, to) in LEGAL_TRANSITIONS else 'rejected'}")
    for start in PHASES
    for to in PHASES
]  # fmt: skip
