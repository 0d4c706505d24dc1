"""Rep counting on held-out predictions: per-frame model outputs → edge frame messages → station → ground truth.

``formcheck analyze`` counts the reps of the bundled clips with the shipped
classifier, which was trained on those very clips. Here every clip is run
through the same rep counter with the outputs of the cross-validation fold
model that never saw its person, so the counts say how the whole chain
(classifier → ``formcheck_aggregator.reps`` → grading) does on a new person.

Frame messages are built as ``formcheck_edge.processor.FrameProcessor.process``
builds them, from the cached pose track and the fold model's outputs:
``no_person`` where there is no pose or the lower-body visibility is below the
edge default, otherwise ``phase`` = argmax, ``phase_p`` and ``bad_p`` rounded
like ``PhaseFormClassifier``, ``form`` from the model's bad threshold, ``faults``
from ``formcheck_edge.faults`` with the default rules, and the published angles.

Pure numpy and pydantic: no TensorFlow, so it is unit-tested in the edge venv.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from formcheck_aggregator.station import Station, StationOutput
from formcheck_edge.capture import file_frame_ts
from formcheck_edge.classifier import MODEL_PHASES
from formcheck_edge.config import FaultSection
from formcheck_edge.faults import frame_faults
from formcheck_edge.features import PoseLandmarks, frame_features
from formcheck_edge.processor import PUBLISHED_ANGLES
from formcheck_models.training.dataset import DEFAULT_MIN_VISIBILITY, ClipPoses, ClipTruth
from formcheck_models.training.labels import FAULT_LABELS, GOOD_LABEL
from formcheck_protocol.messages import Exercise, FrameMessage, Phase, RepMessage

FloatArray = npt.NDArray[np.float32]

NODE: Final = "heldout"
BOOT: Final = "00000000c0ffee00"
# A fixed capture time for frame 0 (2025-11-21), inside the protocol's plausible window.
T0_MS: Final = 1_763_700_000_000
BOTTOM_TOLERANCE: Final = 10
"""Frames: the data README's bottom-frame tolerance for paused reps and moving cameras (±5 otherwise)."""


def frame_messages(
    poses: ClipPoses,
    phase_p: FloatArray,
    bad_p: FloatArray,
    *,
    exercise: Exercise = "squat",
    phases: Sequence[Phase] = MODEL_PHASES,
    bad_threshold: float = 0.5,
    min_visibility: float = DEFAULT_MIN_VISIBILITY,
    faults: FaultSection | None = None,
    node: str = NODE,
    boot: str = BOOT,
    t0_ms: int = T0_MS,
) -> list[FrameMessage]:
    """One :class:`FrameMessage` per frame of a clip, as the edge node would publish it.

    ``phase_p[i]`` (over ``phases``) and ``bad_p[i]`` are the model's outputs for frame ``i``; they are
    read only where the edge node would run the model (a pose with enough lower-body visibility) and must
    be finite there. Frame ``i`` gets ``seq = i`` and ``ts = file_frame_ts(t0_ms, i, fps)``, as a file
    source stamps it.
    """
    n = poses.frames
    if phase_p.shape != (n, len(phases)) or bad_p.shape != (n,):
        raise ValueError(f"{n} frames need phase_p of shape {(n, len(phases))} and bad_p of shape {(n,)}, "
                         f"got {phase_p.shape} and {bad_p.shape}")
    rules = faults or FaultSection()
    messages: list[FrameMessage] = []
    for i in range(n):
        ts = file_frame_ts(t0_ms, i, poses.fps)
        features = (frame_features(PoseLandmarks(world=poses.world[i], visibility=poses.visibility[i]))
                    if poses.present[i] else None)
        if features is None or features.lower_body_visibility < min_visibility:
            messages.append(FrameMessage(
                node=node, boot=boot, seq=i, ts=ts, exercise=exercise, phase="no_person", form="good", bad_p=0.0,
                vis=round(features.visibility, 3) if features else 0.0,
            ))
            continue
        probs, bad = phase_p[i], float(bad_p[i])
        if not (np.isfinite(probs).all() and np.isfinite(bad)):
            raise ValueError(f"frame {i} has a person but no model output")
        phase = phases[int(np.argmax(probs))]
        bad = round(bad, 4)
        messages.append(FrameMessage(
            node=node, boot=boot, seq=i, ts=ts, exercise=exercise, phase=phase,
            phase_p={label: round(float(p), 4) for label, p in zip(phases, probs, strict=True)},
            form="bad" if bad >= bad_threshold else "good", bad_p=bad,
            faults=frame_faults(exercise, phase, features.angles, rules),
            angles={name: round(features.angles[name], 3) for name in PUBLISHED_ANGLES},
            vis=round(features.visibility, 3),
        ))
    return messages


@dataclass(frozen=True)
class StationResult:
    """What the station made of one clip's frames."""

    reps: tuple[RepMessage, ...]
    partial_reps: int


def run_station(messages: Sequence[FrameMessage], exercise: Exercise = "squat", node: str = NODE) -> StationResult:
    """Feed the frames to a fresh :class:`Station` and flush it, as ``formcheck analyze`` does."""
    station = Station(node, exercise)
    outputs = StationOutput()
    for message in messages:
        outputs.extend(station.on_frame(message))
    outputs.extend(station.finish())
    partial = sum(s.partial_reps for s in outputs.sets) + station.partials_outside_sets
    return StationResult(reps=tuple(outputs.reps), partial_reps=partial)


def match_bottoms(labelled: Sequence[int], reps: Sequence[RepMessage]) -> tuple[int | None, ...]:
    """Per labelled bottom frame, the index of the counted rep it belongs to, or None (missed).

    A labelled bottom belongs to the counted rep whose frames ``[start_seq, end_seq]`` contain it; when
    a counted rep contains several (reps merged into one), only the nearest to its bottom is matched.
    """
    matched: list[int | None] = [None] * len(labelled)
    for r, rep in enumerate(reps):
        inside = [k for k, b in enumerate(labelled) if rep.start_seq <= b <= rep.end_seq]
        if inside:
            matched[min(inside, key=lambda k: abs(labelled[k] - rep.bottom_seq))] = r
    return tuple(matched)


@dataclass(frozen=True)
class ClipRepCount:
    """Held-out rep counting of one clip against its ground truth."""

    clip: str
    group: str
    view: str
    expected: int
    counted: int
    partial_expected: int
    partial_counted: int
    labelled_bottoms: tuple[int, ...]
    counted_bottoms: tuple[int, ...]
    matched: tuple[int | None, ...]
    """Per labelled rep, the index of its counted rep (None = missed)."""
    forms: tuple[str, ...]
    verdicts: tuple[str, ...]

    @property
    def count_error(self) -> int:
        return self.counted - self.expected

    @property
    def bottom_errors(self) -> tuple[int, ...]:
        """Counted minus labelled bottom frame of each matched rep."""
        return tuple(self.counted_bottoms[m] - b for b, m in zip(self.labelled_bottoms, self.matched, strict=True)
                     if m is not None)

    @property
    def labelled_fault(self) -> bool:
        return any(f in FAULT_LABELS for f in self.forms)

    @property
    def flagged_bad(self) -> bool:
        return "bad" in self.verdicts

    def rep_form(self, fault: bool) -> tuple[int, int]:
        """(matched reps labelled a fault — or ``good`` when not ``fault`` — , how many of them were judged bad)."""
        judged = [self.verdicts[m] == "bad" for f, m in zip(self.forms, self.matched, strict=True)
                  if m is not None and ((f in FAULT_LABELS) if fault else (f == GOOD_LABEL))]
        return len(judged), sum(judged)


def evaluate_clip(truth: ClipTruth, group: str, result: StationResult) -> ClipRepCount:
    """Compare the station's reps of one clip with its ``ground_truth.csv`` row."""
    return ClipRepCount(
        clip=truth.name, group=group, view=truth.view,
        expected=truth.complete_reps, counted=len(result.reps),
        partial_expected=truth.partial_reps, partial_counted=result.partial_reps,
        labelled_bottoms=truth.bottom_frames, counted_bottoms=tuple(r.bottom_seq for r in result.reps),
        matched=match_bottoms(truth.bottom_frames, result.reps),
        forms=truth.form, verdicts=tuple(r.verdict for r in result.reps),
    )


@dataclass(frozen=True)
class RepCountTotals:
    """Totals over clips."""

    clips: int
    exact: int
    mean_abs_count_error: float
    expected: int
    counted: int
    matched: int
    partial_expected: int
    partial_counted: int
    bottom_mean_abs: float | None
    bottom_median_abs: float | None
    bottom_max_abs: int | None
    bottom_within_tolerance: int
    fault_clips: int
    fault_clips_flagged: int
    other_clips: int
    other_clips_flagged: int
    fault_reps: int
    fault_reps_bad: int
    good_reps: int
    good_reps_bad: int

    @classmethod
    def of(cls, results: Sequence[ClipRepCount]) -> RepCountTotals:
        errors = [abs(e) for r in results for e in r.bottom_errors]
        fault = [r for r in results if r.labelled_fault]
        other = [r for r in results if not r.labelled_fault]
        fault_reps = [r.rep_form(True) for r in results]
        good_reps = [r.rep_form(False) for r in results]
        return cls(
            clips=len(results),
            exact=sum(r.count_error == 0 for r in results),
            mean_abs_count_error=(sum(abs(r.count_error) for r in results) / len(results)) if results else 0.0,
            expected=sum(r.expected for r in results),
            counted=sum(r.counted for r in results),
            matched=sum(m is not None for r in results for m in r.matched),
            partial_expected=sum(r.partial_expected for r in results),
            partial_counted=sum(r.partial_counted for r in results),
            bottom_mean_abs=statistics.fmean(errors) if errors else None,
            bottom_median_abs=statistics.median(errors) if errors else None,
            bottom_max_abs=max(errors) if errors else None,
            bottom_within_tolerance=sum(e <= BOTTOM_TOLERANCE for e in errors),
            fault_clips=len(fault),
            fault_clips_flagged=sum(r.flagged_bad for r in fault),
            other_clips=len(other),
            other_clips_flagged=sum(r.flagged_bad for r in other),
            fault_reps=sum(n for n, _ in fault_reps),
            fault_reps_bad=sum(b for _, b in fault_reps),
            good_reps=sum(n for n, _ in good_reps),
            good_reps_bad=sum(b for _, b in good_reps),
        )

    def one_line(self) -> str:
        bottom = (f"bottom frame |error| mean {self.bottom_mean_abs:.1f}, max {self.bottom_max_abs}"
                  if self.bottom_mean_abs is not None else "no rep matched")
        return (f"held-out rep counting: {self.exact}/{self.clips} clips exact, mean |count error| "
                f"{self.mean_abs_count_error:.2f}, {self.counted} reps counted / {self.expected} expected "
                f"({self.matched} matched), partial {self.partial_counted}/{self.partial_expected}; {bottom}; "
                f"fault clips flagged bad {self.fault_clips_flagged}/{self.fault_clips}, "
                f"other clips flagged bad {self.other_clips_flagged}/{self.other_clips}")
