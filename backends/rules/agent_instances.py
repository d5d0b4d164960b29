"""Declarative apply of agent instances (``ApplyAgentInstance``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["apply"]


def apply(
    existing: pb.AgentInstance | None, request: pb.ApplyAgentInstanceRequest, new_id: str, now: datetime
) -> tuple[pb.AgentInstance, pb.ApplyOutcome]:
    """The agent instance to store after a validated apply, and what happened.

    For ``APPLY_OUTCOME_UNCHANGED`` the returned instance is ``existing`` and
    nothing needs to be written. ``new_id`` is used only on creation.
    """
    if existing is None:
        created = pb.AgentInstance(
            id=new_id, name=request.name, spec=request.spec, version=1, create_time=now, update_time=now
        )
        return created, pb.ApplyOutcome.CREATED
    if existing.spec == request.spec:
        return existing, pb.ApplyOutcome.UNCHANGED
    updated = dataclasses.replace(existing, spec=request.spec, version=existing.version + 1, update_time=now)
    return updated, pb.ApplyOutcome.UPDATED
