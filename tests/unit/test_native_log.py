"""The native libraries' start-up chatter is dropped; their errors and everything else are kept, in order."""

from __future__ import annotations

import logging
import os
import time

import pytest

from formcheck_runtime.native_log import NativeLogFilter, is_native_noise

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796207563.753239   19543 task_runner.cc:85] GPU suport is not available\n",
    b"W0000 00:00:1796207563.825717   19590 inference_feedback_manager.cc:114] Feedback manager requires ...\n",
    b"W1202 10:32:46.416000   19590 landmark_projection_calculator.cc:186] Using NORM_RECT without ...\n",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
]
KEPT = [
    b"E0000 00:00:1796207563.825717   19590 model_loader.cc:10] cannot open model\n",
    b"2026-12-02 10:32:46,416 WARNING formcheck_edge.capture: video source lost\n",
    b"formcheck: error: classifier model not found\n",
]


def test_what_is_noise() -> None:
    assert all(is_native_noise(line) for line in NOISE)
    assert not any(is_native_noise(line) for line in KEPT)


@pytest.mark.operations
def test_noise_is_dropped_and_the_rest_kept_in_order(capfd: pytest.CaptureFixture[str]) -> None:
    quiet = NativeLogFilter().start()
    assert quiet.active
    for line in (NOISE[0], KEPT[0], NOISE[1], KEPT[1], NOISE[4], KEPT[2]):
        os.write(2, line)
    quiet.stop()
    quiet.stop()  # idempotent
    assert capfd.readouterr().err.encode() == b"".join(KEPT)


def test_debug_level_filters_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.DEBUG)
    try:
        quiet = NativeLogFilter().start()
        assert not quiet.active
        os.write(2, NOISE[1])
        quiet.stop()
    finally:
        root.setLevel(before)
    assert capfd.readouterr().err.encode() == NOISE[1]


def test_one_window_at_a_time(capfd: pytest.CaptureFixture[str]) -> None:
    first = NativeLogFilter().start()
    second = NativeLogFilter().start()
    assert first.active and not second.active
    second.stop()
    os.write(2, NOISE[2])
    first.stop()
    assert capfd.readouterr().err == ""


@pytest.mark.operations
def test_the_window_ends_by_itself(capfd: pytest.CaptureFixture[str]) -> None:
    """A node whose camera never delivers a frame must not keep its log held back."""
    quiet = NativeLogFilter(max_s=0.2).start()
    os.write(2, NOISE[1] + KEPT[1])
    time.sleep(0.6)
    assert not quiet.active
    assert capfd.readouterr().err.encode() == KEPT[1]
    quiet.stop()
