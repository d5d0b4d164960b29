"""``stigmer server`` sets the garbage collector for serving once it listens (``server/collector.py``)."""

from __future__ import annotations

import gc

from stigmer_backend.server.collector import YOUNG_THRESHOLD, settle_for_serving


def test_settling_freezes_what_exists_and_spaces_young_collections_out() -> None:
    thresholds = gc.get_threshold()
    survivor = [["built at start-up"]]  # a list is always tracked
    try:
        settle_for_serving()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        # Out of every generation a collection walks (frozen objects are in none of them).
        assert gc.is_tracked(survivor) and not any(tracked is survivor for tracked in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
