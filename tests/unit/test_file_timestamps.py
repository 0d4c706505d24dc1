"""A video file gives the same capture times, frame to frame, whenever it is played.

The pose landmarker smooths landmarks over the intervals between timestamps, so intervals that followed the
wall clock's sub-millisecond phase changed landmarks (and a borderline rep) from one run of a clip to the next.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from formcheck_edge import capture
from formcheck_edge.capture import CapturedFrame, CaptureThread, RgbImage, file_frame_ts
from formcheck_edge.config import SourceSection
from formcheck_runtime.queues import DropQueue, QueueClosed

FPS = 29.92  # 33.42 ms a frame: the intervals alternate 33 and 34 ms
FRAMES = 120


class FakeFile:
    """A file source: ``FRAMES`` tiny frames, then the end."""

    kind = "file"
    live = False
    fps: float | None = FPS

    def __init__(self) -> None:
        self.left = FRAMES

    def read(self) -> RgbImage | None:
        if not self.left:
            return None
        self.left -= 1
        return np.zeros((2, 2, 3), np.uint8)

    def close(self) -> None:
        pass


def capture_times(wall_clock_ms: float, realtime: bool, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    # A clock read at a given phase; the monotonic clock runs a second per call, so realtime play never waits.
    clock = SimpleNamespace(time=lambda: wall_clock_ms / 1000, monotonic=itertools.count().__next__)
    monkeypatch.setattr(capture, "time", clock)
    frames: DropQueue[CapturedFrame] = DropQueue(FRAMES + 1)
    thread = CaptureThread(SourceSection(uri="clip.mp4", realtime=realtime, queue_size=FRAMES + 1), FakeFile(),
                           frames)
    thread.run()
    out = []
    while True:
        try:
            frame = frames.get(timeout=0.1)
        except QueueClosed:
            return out
        if frame is not None:
            out.append(frame.ts_ms)


@pytest.mark.parametrize("realtime", [False, True], ids=["as-fast-as-possible", "realtime"])
def test_a_file_has_the_same_frame_intervals_whatever_the_wall_clock_phase(
    realtime: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [capture_times(1_763_700_000_000 + phase, realtime, monkeypatch) for phase in (0.1, 0.5, 0.9, 0.999)]
    intervals = [[b - a for a, b in itertools.pairwise(ts)] for ts in runs]
    assert all(len(ts) == FRAMES for ts in runs)
    assert all(i == intervals[0] for i in intervals), "frame intervals follow the wall clock's phase"
    assert set(intervals[0]) == {33, 34}
    # The same intervals as the training set's pose tracks (frame i at round(i * 1000 / fps) from 0).
    assert intervals[0] == [round((i + 1) * 1000 / FPS) - round(i * 1000 / FPS) for i in range(FRAMES - 1)]
    assert runs[0] == [file_frame_ts(1_763_700_000_000, i, FPS) for i in range(FRAMES)]
