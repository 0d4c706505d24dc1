from __future__ import annotations

import logging

import pytest

from formcheck_runtime.ratelog import RateLimitedLog, growing_interval


def test_one_line_per_key_per_interval_with_the_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    ratelog = RateLimitedLog(logging.getLogger("t"), interval_s=3600)
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            ratelog("a", "first problem")
        ratelog("b", "other problem", logging.ERROR)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "first problem"), (logging.ERROR, "other problem"),
    ]


def test_suppressed_lines_are_counted_in_the_next_one(caplog: pytest.LogCaptureFixture) -> None:
    ratelog = RateLimitedLog(logging.getLogger("t"), interval_s=3600)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            ratelog("a", "x")
        ratelog._interval = 0.0  # the interval has passed
        ratelog("a", "x")
    assert [r.getMessage() for r in caplog.records] == ["x", "x (2 similar messages suppressed)"]


def test_growing_interval_logs_rarely_and_forever() -> None:
    logged = [n for n in range(1, 5001) if growing_interval(n)]
    assert logged == [1, 10, 100, 1000, 2000, 3000, 4000, 5000]
    assert not growing_interval(0)
