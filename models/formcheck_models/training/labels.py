"""Per-frame phase and form labels derived from rep-level ground truth.

No human per-frame phase labels exist: ``ground_truth.csv`` gives, per complete
rep, one bottom frame (±5 frames, ±10 for paused reps and moving cameras) and
one form label; the ``labels/`` CSVs mark only some rep boundaries and are not
used. Phases are therefore derived from the body's depth trajectory, anchored
on the human bottom frames.

Depth signal (larger = deeper), the same measure the rep counter uses
(``formcheck_aggregator.reps.DEPTH_SIGNAL``) and the one the ground truth's bottom frames
are defined by: squat → ``hip_depth`` (pelvis below the knees, in thigh
lengths); push-up → minus ``shoulder_height`` (neck above the wrists, in torso
lengths: the bottom is where the shoulders are lowest); curl → elbow flexion
``1 − elbow / 180`` (the curl's "bottom" is peak flexion, the weight at the
top; ``standing`` is the arm hanging extended). The
signal is smoothed with a centred moving mean over ``smooth_frames`` frames,
using only frames with a person.

Rules, in order (``LabelRules`` holds the numbers):

1. Frames without a person (no pose, or too little lower-body visibility:
   the edge node's ``no_person`` gate) are excluded from both losses (label
   ``IGNORE``); the runtime emits ``no_person`` itself. Every other frame
   starts as ``standing`` with good form.
2. The clip's standing level is the 5th percentile of the smoothed signal.
3. Each complete rep is anchored at the signal's maximum within
   ``search_radius`` frames of its ground-truth bottom frame (the "extreme").
   Consecutive reps are split at the signal's minimum between their extremes.
   The rep's top level on each side is the lower of the clip's standing level
   and the lowest signal between the split points and the extreme. A rep with
   no person within ``search_radius`` of its bottom frame is excluded there.
4. ``bottom`` = the contiguous frames around the extreme whose signal is within
   ``bottom_margin`` × (extreme − top) of the extreme.
5. ``descending`` = going back from the bottom while the signal stays more than
   ``standing_margin`` × (extreme − top before) above the top before; likewise
   forward from the bottom for ``ascending``. Walks stop at a frame without a
   person and at the split point.
6. Form of a complete rep's frames (descending through ascending): a fault
   label (``FAULT_LABELS``) → bad (1); ``good`` → good (0); ``unclear`` →
   excluded from the form loss. Frames outside reps stay good.
7. Partial reps: a clip edge whose signal is above the standing band and is not
   part of a complete rep is a partial rep. When the ground truth lists partial
   reps, it is labelled with rules 4–5 around its own extreme, unless that
   extreme lies within ``edge_guard`` frames of the clip edge (the bottom may be
   cut off, so the phase is unknowable). Otherwise, and always for its form
   (never judged in the ground truth), it is excluded.
8. Remaining frames are ``standing``: waiting, walking, shuffling, racking a bar.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from formcheck_edge.classifier import MODEL_PHASES

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

STANDING: Final = MODEL_PHASES.index("standing")
DESCENDING: Final = MODEL_PHASES.index("descending")
BOTTOM: Final = MODEL_PHASES.index("bottom")
ASCENDING: Final = MODEL_PHASES.index("ascending")
IGNORE: Final = -1
"""Label of a frame excluded from a loss."""

GOOD: Final = 0
BAD: Final = 1
FAULT_LABELS: Final = frozenset({"knees_in", "knee_over_toes", "too_deep", "forward_lean", "too_upright"})
GOOD_LABEL: Final = "good"
UNCLEAR_LABEL: Final = "unclear"

_STANDING_PERCENTILE: Final = 5.0


@dataclass(frozen=True)
class LabelRules:
    """Numbers behind the labelling rules (see the module docstring)."""

    smooth_frames: int = 5
    search_radius: int = 8
    bottom_margin: float = 0.12
    standing_margin: float = 0.12
    edge_guard: int = 2


@dataclass(frozen=True)
class RepSpan:
    """Frames of one labelled rep, all bounds inclusive; ``form`` is None for partial reps."""

    start: int
    bottom_start: int
    bottom_end: int
    end: int
    form: str | None


@dataclass(frozen=True)
class FrameLabels:
    """Per-frame phase index into ``MODEL_PHASES`` and bad-form flag; ``IGNORE`` where excluded."""

    phase: IntArray
    bad: IntArray
    reps: tuple[RepSpan, ...]


def depth_signal(exercise: str, measures: Mapping[str, FloatArray]) -> FloatArray:
    """Per-frame depth of the movement (larger = closer to the bottom) for ``exercise``."""
    if exercise in ("squat", "lunge"):
        return measures["hip_depth"].astype(np.float32)
    if exercise == "pushup":
        return (-measures["shoulder_height"]).astype(np.float32)
    if exercise == "curl":
        return (1.0 - measures["elbow"] / 180.0).astype(np.float32)
    raise ValueError(f"no depth signal defined for exercise {exercise!r}")


def smooth(signal: FloatArray, frames: int) -> FloatArray:
    """Centred moving mean over the non-NaN frames of each window; NaN frames stay NaN."""
    valid = ~np.isnan(signal)
    kernel = np.ones(frames)
    total = np.convolve(np.where(valid, signal, 0.0), kernel, mode="same")
    count = np.convolve(valid.astype(np.float64), kernel, mode="same")
    return np.where(valid, total / np.maximum(count, 1.0), np.nan).astype(np.float32)


def _argext(values: FloatArray, lo: int, hi: int, *, largest: bool) -> int | None:
    """Index of the largest (or smallest) non-NaN value in ``values[lo:hi + 1]``."""
    window = values[lo:hi + 1]
    if window.size == 0 or np.isnan(window).all():
        return None
    return lo + int(np.nanargmax(window) if largest else np.nanargmin(window))


def _label_rep(
    s: FloatArray, peak: int, lo: int, hi: int, *, top: float, form: str | None, rules: LabelRules
) -> RepSpan:
    """Bottom, descending and ascending spans of the rep whose extreme is ``peak``, within ``[lo, hi]``."""
    extreme = float(s[peak])
    top_before = min(top, float(np.nanmin(s[lo:peak + 1])))
    top_after = min(top, float(np.nanmin(s[peak:hi + 1])))
    floor = extreme - rules.bottom_margin * (extreme - min(top_before, top_after))

    def walk(i: int, step: int, threshold: float) -> int:
        # NaN compares False, so a frame without a person also ends the walk.
        while lo <= i + step <= hi and s[i + step] > threshold:
            i += step
        return i

    bottom_start = walk(peak, -1, floor)
    bottom_end = walk(peak, 1, floor)
    start = walk(bottom_start, -1, top_before + rules.standing_margin * (extreme - top_before))
    end = walk(bottom_end, 1, top_after + rules.standing_margin * (extreme - top_after))
    return RepSpan(start=start, bottom_start=bottom_start, bottom_end=bottom_end, end=end, form=form)


def _paint(phase: IntArray, rep: RepSpan) -> None:
    phase[rep.start:rep.bottom_start] = DESCENDING
    phase[rep.bottom_start:rep.bottom_end + 1] = BOTTOM
    phase[rep.bottom_end + 1:rep.end + 1] = ASCENDING


def _complete_reps(s: FloatArray, bottom_frames: Sequence[int], rules: LabelRules) -> list[tuple[int, int, int] | None]:
    """Per ground-truth rep: (extreme, lo, hi) bounds, or None where no frame near its bottom has a person."""
    last = len(s) - 1
    peaks = [_argext(s, max(0, b - rules.search_radius), min(last, b + rules.search_radius), largest=True)
             for b in bottom_frames]
    found = [p for p in peaks if p is not None]
    splits = [_argext(s, a + 1, b - 1, largest=False) for a, b in itertools.pairwise(found)]
    bounds: list[tuple[int, int, int] | None] = []
    k = 0
    for peak in peaks:
        if peak is None:
            bounds.append(None)
            continue
        before = splits[k - 1] if k > 0 else None
        after = splits[k] if k < len(splits) else None
        lo = before + 1 if before is not None else 0
        hi = after - 1 if after is not None else last
        bounds.append((peak, lo, max(lo, hi)))
        k += 1
    return bounds


def _edge_segment(s: FloatArray, free: npt.NDArray[np.bool_], threshold: float, *, at_start: bool) -> tuple[int, int]:
    """Frames ``[a, b]`` running in from a clip edge while unassigned and above ``threshold``; a > b if none."""
    present = np.flatnonzero(~np.isnan(s))
    if present.size == 0:
        return 1, 0
    step = 1 if at_start else -1
    i = int(present[0] if at_start else present[-1])
    edge = i
    while 0 <= i < len(s) and free[i] and s[i] > threshold:
        i += step
    inner = i - step
    return (edge, inner) if at_start else (inner, edge)


def label_clip(
    depth: FloatArray,
    bottom_frames: Sequence[int],
    forms: Sequence[str],
    partial_reps: int,
    rules: LabelRules = LabelRules(),
) -> FrameLabels:
    """Labels of every frame of a clip from its depth signal (NaN = no person) and its ground truth."""
    if len(bottom_frames) != len(forms):
        raise ValueError(f"{len(bottom_frames)} bottom frames but {len(forms)} form labels")
    unknown = set(forms) - FAULT_LABELS - {GOOD_LABEL, UNCLEAR_LABEL}
    if unknown:
        raise ValueError(f"unknown form labels: {sorted(unknown)}")
    s = smooth(depth.astype(np.float32), rules.smooth_frames)
    present = ~np.isnan(s)
    phase = np.where(present, STANDING, IGNORE).astype(np.int64)
    bad = np.where(present, GOOD, IGNORE).astype(np.int64)
    if not present.any():
        return FrameLabels(phase=phase, bad=bad, reps=())
    top = float(np.percentile(s[present], _STANDING_PERCENTILE))
    free = present.copy()
    reps: list[RepSpan] = []
    for b, form, bounds in zip(bottom_frames, forms, _complete_reps(s, bottom_frames, rules), strict=True):
        if bounds is None:
            lo, hi = max(0, b - rules.search_radius), b + rules.search_radius
            phase[lo:hi + 1] = IGNORE
            bad[lo:hi + 1] = IGNORE
            free[lo:hi + 1] = False
            continue
        rep = _label_rep(s, *bounds, top=top, form=form, rules=rules)
        _paint(phase, rep)
        window = slice(rep.start, rep.end + 1)
        bad[window] = IGNORE if form == UNCLEAR_LABEL else (BAD if form in FAULT_LABELS else GOOD)
        free[window] = False
        reps.append(rep)
    threshold = top + rules.standing_margin * (float(np.nanmax(s)) - top)
    for at_start in (True, False):
        a, b = _edge_segment(s, free, threshold, at_start=at_start)
        if a > b:
            continue
        bad[a:b + 1] = IGNORE
        peak = _argext(s, a, b, largest=True)
        edge = a if at_start else b
        if partial_reps <= 0 or peak is None or abs(peak - edge) < rules.edge_guard:
            phase[a:b + 1] = IGNORE
            continue
        rep = _label_rep(s, peak, a, b, top=top, form=None, rules=rules)
        _paint(phase, rep)
        free[a:b + 1] = False
        reps.append(rep)
    return FrameLabels(phase=phase, bad=bad, reps=tuple(sorted(reps, key=lambda r: r.start)))
