"""How a command argument names an agent instance: by id (it has the id prefix) or else by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["agent_ref"]


def agent_ref(name_or_id: str) -> pb.AgentInstanceRef:
    """The ``AgentInstanceRef`` for ``name_or_id``; names cannot start with the id prefix (it has an underscore)."""
    from stigmer_backend.backends.rules.ids import AGENT_INSTANCE_PREFIX
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    if name_or_id.startswith(AGENT_INSTANCE_PREFIX):
        return pb.AgentInstanceRef(id=name_or_id)
    return pb.AgentInstanceRef(name=name_or_id)
