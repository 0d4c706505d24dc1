"""Keeping logs readable under repeated failures: one mechanism for every formcheck process."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """At most one line per key per interval, saying how many similar lines were suppressed in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            suppressed = self._suppressed.pop(key, 0)
            self._last[key] = now
        more = f" ({suppressed} similar messages suppressed)" if suppressed else ""
        self._logger.log(level, "%s%s", message, more)


def growing_interval(count: int) -> bool:
    """Whether the ``count``-th occurrence of a counted event is worth a log line: 1st, 10th, 100th, every 1000th."""
    return count in (1, 10, 100) or (count > 0 and count % 1000 == 0)
