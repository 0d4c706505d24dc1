"""Idle mode: an empty station runs no full-rate pose and publishes no frames until a person appears.

After ``idle.after_s`` without a person (frames still published, as ``no_person``, meanwhile) the node goes
idle. Idle, it looks at one captured frame in ``idle.check_every`` (the capture thread does not even convert
the others to RGB) and decides cheaply whether to run the pose model on it:

* ``gate: motion`` (default): a grey image of about 64 pixels across, compared with a slowly updated
  background; the pose model runs only when enough of it changed, and every ``probe_s`` regardless; once
  something moved, every frame is looked at and the pose model runs on each until a second after the last
  motion (tracking a person who walks in from frame to frame finds them sooner than looks a few frames apart);
* ``gate: detector``: the pose model runs on every looked-at frame.

Both wake up on the same frame (the first looked-at frame showing the person), so they have the same wake-up
time; ``bench/idle_bench.py`` measures what each costs. The first frame with a person is published at once
and the node is back at full rate from the next captured frame. Frames looked at while idle get no ``seq``:
``seq`` counts published frames, so the aggregator sees no gap for the idle time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from formcheck_edge.capture import CapturedFrame
from formcheck_edge.config import IdleSection
from formcheck_edge.processor import Observation, ProcessorTimings, Sighting

MOTION_WIDTH = 64
"""Width of the motion gate's grey image, pixels."""

_BACKGROUND_ALPHA = 0.05  # share of each looked-at frame blended into the background
ALERT_MS = 1000
"""After motion without a person, every frame is looked at and the pose model runs on it for this long."""


class Looking(Protocol):
    """What the watch needs of :class:`formcheck_edge.processor.FrameProcessor`."""

    timings: ProcessorTimings

    def look(self, frame: CapturedFrame) -> Sighting: ...

    def number(self, sighting: Sighting) -> Observation: ...


class MotionGate:
    """Has the scene changed? A downscaled grey image against a running-average background."""

    def __init__(self, pixel_delta: int, area: float) -> None:
        self.pixel_delta = pixel_delta
        self.area = area
        self._background: npt.NDArray[np.float32] | None = None

    def reset(self) -> None:
        self._background = None

    @staticmethod
    def small(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """The green channel (closest to luminance), strided then area-averaged to ``MOTION_WIDTH`` across."""
        w = rgb.shape[1]
        step = max(1, w // (4 * MOTION_WIDTH))
        sampled = rgb[::step, ::step, 1]
        width = min(MOTION_WIDTH, sampled.shape[1])
        height = max(1, round(sampled.shape[0] * width / sampled.shape[1]))
        return cv2.resize(sampled, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)

    def moved(self, rgb: npt.NDArray[np.uint8]) -> bool:
        """True when at least ``area`` of the image differs from the background by ``pixel_delta`` grey levels."""
        small = self.small(rgb)
        background = self._background
        if background is None or background.shape != small.shape:
            self._background = small
            return False  # the first look (or a new resolution) has nothing to compare with (probe_s covers it)
        moving = np.count_nonzero(np.abs(small - background) >= self.pixel_delta)
        cv2.accumulateWeighted(small, background, _BACKGROUND_ALPHA)
        return bool(moving >= self.area * small.size)


class IdleWatch:
    """Between the capture queue and the classifier: :meth:`step` a captured frame, classify what it returns.

    Pure logic over capture times, so the live node, the tests and the benchmarks run the same code.
    """

    def __init__(self, config: IdleSection, processor: Looking, before_probe: Callable[[], None] | None = None) -> None:
        """``before_probe``: called just before the pose model runs on an idle frame (the runner has the capture
        thread deliver every frame again, so none is skipped while the pose model decides; a Pi's pose takes
        several frame times)."""
        self.config = config
        self.processor = processor
        self._before_probe = before_probe
        self.idle = False
        self.changed = False
        """Set when the last :meth:`step` entered or left idle mode (the caller publishes the status)."""
        self.wakes = 0
        self._alert_until: int | None = None  # motion seen without a person: every frame, pose on each, till then
        self._absent_since: int | None = None
        self._last_probe_ts = 0
        self._motion = MotionGate(config.motion_pixel_delta, config.motion_area)

    @property
    def stride(self) -> int:
        """One captured frame in this many is looked at (the capture thread skips converting the others)."""
        return self.config.check_every if self.idle and self._alert_until is None else 1

    def step(self, frame: CapturedFrame) -> Observation | None:
        """The observation to classify and publish, or None (idle: nothing to publish)."""
        self.changed = False
        if not self.idle:
            seen = self.processor.look(frame)
            self._track(seen, frame.ts_ms)
            return self.processor.number(seen)
        alert = self._alert_until is not None
        if frame.index % self.config.check_every and not alert:
            return None
        timings = self.processor.timings
        timings.idle_looked += 1
        if self.config.gate == "motion":
            moved = self._motion.moved(frame.rgb)
            probe_due = self.config.probe_s > 0 and frame.ts_ms - self._last_probe_ts >= self.config.probe_s * 1000
            if moved:
                # Something moves: the pose model looks at every frame while it does (and ALERT_S after). Sparse
                # looks at someone walking in find them later than a pose model that follows every frame.
                self._alert_until = frame.ts_ms + ALERT_MS
            elif self._alert_until is not None and frame.ts_ms > self._alert_until:
                self._alert_until = None
            if self._alert_until is None and not probe_due:
                return None
        self._last_probe_ts = frame.ts_ms
        timings.idle_probes += 1
        if self._before_probe is not None:
            self._before_probe()
        seen = self.processor.look(frame)
        if not seen.person:
            return None
        self.idle, self.changed = False, True
        self._alert_until = None
        self.wakes += 1
        self._absent_since = None
        return self.processor.number(seen)

    def _track(self, seen: Sighting, ts: int) -> None:
        if not self.config.enabled:
            return
        if seen.person:
            self._absent_since = None
            return
        if self._absent_since is None:
            self._absent_since = ts
        elif ts - self._absent_since >= self.config.after_s * 1000:
            self.idle, self.changed = True, True
            self._motion.reset()
            self._last_probe_ts = ts
