"""``stigmer server`` sets the garbage collector for serving once it listens (``server/collector.py``)."""

from __future__ import annotations

import gc

from stigmer_backend.server.collector import settle_for_serving


def test_settling_moves_what_exists_out_of_every_generation_a_collection_walks() -> None:
    thresholds = gc.get_threshold()
    survivor = [["built at start-up"]]  # a list is always tracked
    try:
        settle_for_serving()
        # Frozen objects are in none of the generations (gc.get_objects lists those), and stay alive.
        assert gc.is_tracked(survivor) and not any(tracked is survivor for tracked in gc.get_objects())
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == thresholds  # the young threshold is left as it was
    finally:
        gc.unfreeze()
