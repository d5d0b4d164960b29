"""The stable id of each conformance test, ``area/RPC/check[/case]``.

Known-failures files, the JUnit report, the JSON summary and TRACEABILITY.md
name tests by it, so it is computed in one place.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["conformance_id"]


def conformance_id(item: pytest.Item) -> str:
    """``area/RPC/check[/case]``: module, class without ``Test``, function without ``test_``, parameters."""
    parts = [Path(str(item.path)).stem]
    cls: type | None = getattr(item, "cls", None)  # a pytest.Function's class; other items have none
    if cls is not None:
        parts.append(cls.__name__.removeprefix("Test"))
    parts.append(getattr(item, "originalname", item.name).removeprefix("test_"))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        parts.append(callspec.id)
    return "/".join(parts)
