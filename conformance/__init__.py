"""The conformance suite: one contract test that every backend must pass.

Run it with ``stigmer conformance run --target ...`` or with pytest and this
package's plugin (``pytest --stigmer-target ... <stigmer_backend.conformance.SUITE_DIR>``);
see CONFORMANCE.md. Areas are modules of ``suite/``; ``client`` has the
helpers a third party may reuse in its own tests.
"""

from .ids import conformance_id
from .suite import SUITE_DIR, SUITE_VERSION

__all__ = ["SUITE_DIR", "SUITE_VERSION", "conformance_id"]
