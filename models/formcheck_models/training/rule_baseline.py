"""Rule-only baseline: phase and form per frame from body measures and fixed rules, no learning.

The model has to beat this on the same held-out frames to earn its place.
Nothing here is fitted to the data: the numbers are the grading config's
depth thresholds and the edge's fault rules, plus one speed per exercise.

* phase: the exercise's graded depth measure (``formcheck_aggregator.grading.GRADE_DEPTH``:
  squat hip height against the knees; push-up and curl the elbow angle),
  its speed over the last ``LAG`` frames (causal, as a live node would see it)
  → ``descending`` / ``ascending`` when it moves faster than ``SPEED`` per
  second, otherwise ``bottom`` when deeper than the grading config's
  ``shallow`` threshold, else ``standing``;
* form: ``bad`` when any per-frame fault rule of ``formcheck_edge.faults`` fires
  (with the rule phase and the default thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

from formcheck_aggregator.grading import GRADE_DEPTH, GradingConfig
from formcheck_edge.classifier import MODEL_PHASES
from formcheck_edge.config import FaultSection
from formcheck_edge.faults import frame_faults
from formcheck_models.training.labels import ASCENDING, BAD, BOTTOM, DESCENDING, GOOD, IGNORE, STANDING
from formcheck_protocol.messages import Exercise

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

LAG: Final = 3
SPEED: Final[dict[Exercise, float]] = {"squat": 0.5, "lunge": 0.5, "pushup": 60.0, "curl": 60.0}
"""Depth units per second above which the rule calls a frame moving (thigh lengths/s; degrees/s)."""


def rule_phases(exercise: Exercise, measures: Mapping[str, FloatArray], fps: float) -> IntArray:
    """Phase index into ``MODEL_PHASES`` per frame; ``IGNORE`` where the measure is missing (no person)."""
    signal = GRADE_DEPTH[exercise]
    # Both sides' mean even where grading takes the more bent side (curls): the baseline the reports were made with.
    angle = signal.angle if signal.either is None else signal.angle.removesuffix("_l")
    depth = signal.sign * measures[angle].astype(np.float64)
    shallow = GradingConfig().shallow[exercise]
    out = np.full(depth.shape[0], IGNORE, dtype=np.int64)
    for i in range(depth.shape[0]):
        if np.isnan(depth[i]):
            continue
        past = depth[max(0, i - LAG)]
        lag = i - max(0, i - LAG)
        speed = (depth[i] - past) * fps / lag if lag and not np.isnan(past) else 0.0
        if speed > SPEED[exercise]:
            out[i] = DESCENDING
        elif speed < -SPEED[exercise]:
            out[i] = ASCENDING
        else:
            out[i] = BOTTOM if depth[i] >= shallow else STANDING
    return out


def rule_bad(exercise: Exercise, measures: Mapping[str, FloatArray], phases: IntArray) -> IntArray:
    """1 where a fault rule fires on the frame, 0 where none does, ``IGNORE`` without a phase."""
    rules = FaultSection()
    out = np.full(phases.shape[0], IGNORE, dtype=np.int64)
    for i, phase in enumerate(phases):
        if phase == IGNORE:
            continue
        angles = {name: float(values[i]) for name, values in measures.items() if not np.isnan(values[i])}
        out[i] = BAD if frame_faults(exercise, MODEL_PHASES[int(phase)], angles, rules) else GOOD
    return out
