"""The contract's rules, written once for every Python backend.

The proto documents what a backend must do; these modules are that text as
code: request validation (``validation``), the execution state machine and
lease (``executions``), declarative apply (``agent_instances``), the
execution context (``execution_context``), identifiers (``ids``), paging
(``paging``), secret references (``secret_refs``) and the error constructors
(``errors``). Adapters only move messages to and from their storage.
"""

CONTRACT_VERSION = "1.0"
"""The contract revision implemented here; the proto says the same (a test checks)."""

__all__ = ["CONTRACT_VERSION"]
