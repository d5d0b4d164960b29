"""Warnings about what clients send, bounded: a flood of bad requests must not become a flood of log lines."""

from __future__ import annotations

import logging
import time

__all__ = ["RateLimitedWarnings"]


class RateLimitedWarnings:
    """At most ``burst`` warnings per ``period`` seconds to ``log``; the rest are counted and reported with the next.

    Only ever used on the event loop thread.
    """

    def __init__(self, log: logging.Logger, burst: int = 5, period: float = 60.0) -> None:
        self._log = log
        self._burst = burst
        self._period = period
        self._window_start = -period
        self._sent = 0
        self._suppressed = 0

    def warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._window_start >= self._period:
            self._window_start, self._sent = now, 0
        if self._sent >= self._burst:
            self._suppressed += 1
            return
        self._sent += 1
        if self._suppressed:
            text += f" ({self._suppressed} similar warnings not logged)"
            self._suppressed = 0
        self._log.warning("%s", text)
