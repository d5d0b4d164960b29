"""The contract's ``.proto`` files, installed with the package (``stigmer_backend.proto`` in the wheel).

``ROOT`` is their import root, for any code generator::

    PROTO=$(python -c 'from stigmer_backend.proto import ROOT; print(ROOT)')
    buf generate "$PROTO" --template buf.gen.yaml    # or: protoc -I "$PROTO" ...

so a client in any language can be generated from exactly the revision installed.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
"""The folder holding ``stigmer/backend/v1/*.proto``."""

__all__ = ["ROOT"]
