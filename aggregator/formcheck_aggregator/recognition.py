"""Which exercise a person is doing, recognised from the pose within their first rep.

Used when nobody named the exercise (``formcheck analyze`` without ``--exercise``; a check-in without one).
Three questions, each on a measure a coach would look at:

1. *Is the body horizontal?* The trunk's lean from vertical (median over the frames seen): a push-up.
   It is decided at the first complete rep of the push-up's depth signal (the shoulders' height) or any other.
2. *What moves, the legs or an elbow?* The hips' depth and the more bent elbow each feed a rep detector
   (:mod:`formcheck_aggregator.reps`). At the hips' first complete rep, or the elbow's second curl-like one
   (the first arm movement is often setting up: taking the bar), the part that moved more over that rep, each
   against a typical full rep of its exercise, names the movement: squat-like or curl. The legs' movement is
   the larger of the hips' travel and the knees' bend (a curl does not bend the knees through most of a
   squat); an arm movement is curl-like only while the wrists stay below the neck (racking a bar on the back
   or pressing it overhead lifts them above).
3. *Squat or lunge?* In a lunge one hip is bent and the other extended at the bottom; in a squat both bend
   alike: the difference between the two hip angles over that first rep.

The thresholds (``RecognitionConfig``) were chosen inside leave-one-source-out folds
(``formcheck models evaluate-reps``); the confidence is how far the deciding measure lies from its threshold.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import Field

from formcheck_aggregator.reps import DEPTH_SIGNAL, PRIOR_RANGE, RepDetector, RepFrames
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.settings import Section


class RecognitionConfig(Section):
    """Thresholds of exercise recognition (defaults: the choice of ``formcheck models evaluate-reps``)."""

    horizontal_lean_deg: float = Field(
        60.0, gt=0, lt=90, description="Median trunk lean from vertical at or above which the body is horizontal "
        "(a push-up)."
    )
    lunge_hip_difference_deg: float = Field(
        35.0, gt=0, lt=180, description="Difference between the left and right hip angles (90th percentile over "
        "the first rep) at or above which a squat-like rep is a lunge."
    )
    curl_wrists_above_neck: float = Field(
        0.1, ge=0, le=1, description="Torso lengths the wrists may rise above the neck in an arm movement that is "
        "a curl; one that lifts them higher (racking a bar on the back, pressing it overhead) is not a curl rep."
    )
    max_frames: int = Field(
        900, ge=30, description="Frames with a person after which the exercise is named from what was seen, "
        "even without a completed rep."
    )


@dataclass(frozen=True)
class Recognition:
    """What the person is doing, how sure, and why (one line for an operator)."""

    exercise: Exercise
    confidence: float
    reason: str
    after_s: float = 0.0
    """Capture time from the person's first frame to the frame that decided: how long a node held frames."""


def _margin(value: float, threshold: float, scale: float) -> float:
    """0.5 at the threshold, toward 1 as ``value`` moves ``scale`` away from it (either side)."""
    return min(1.0, 0.5 + abs(value - threshold) / (2 * scale))


class ExerciseRecogniser:
    """Feed a station's frames in order; :meth:`push` returns the recognition once it is decided."""

    def __init__(self, config: RecognitionConfig | None = None) -> None:
        self.config = config or RecognitionConfig()
        self._hips = RepDetector("squat")
        self._arms = RepDetector("curl")
        self._press = RepDetector("pushup")
        self._leans: list[float] = []
        self._first_ts: int | None = None
        self._last_ts = 0
        self._arm_reps = 0
        self.result: Recognition | None = None

    def push(self, frame: FrameMessage) -> Recognition | None:
        if self.result is not None:
            return self.result
        if frame.phase == "no_person" or "trunk_lean" not in frame.angles:
            return None
        self._leans.append(frame.angles["trunk_lean"])
        if self._first_ts is None:
            self._first_ts = frame.ts
        self._last_ts = frame.ts
        for event in self._hips.push(frame):
            if event.kind == "complete":
                self.result = self._decide(event.rep)
                return self.result
        for event in self._press.push(frame):
            # A push-up is told by the body's lean alone; its own rep only says when the first rep is done.
            if event.kind == "complete" and statistics.median(self._leans) >= self.config.horizontal_lean_deg:
                self.result = self._decide(event.rep)
                return self.result
        for event in self._arms.push(frame):
            if event.kind == "complete" and self._curl_like(event.rep):
                # One arm movement is often setting up (taking the bar, gripping the handles): a curl is decided
                # on its second rep, unless a rep of the hips comes first.
                self._arm_reps += 1
                if self._arm_reps >= 2:
                    self.result = self._decide(event.rep)
                    return self.result
        if len(self._leans) >= self.config.max_frames:
            self.result = self._decide(None)
        return self.result

    def finish(self) -> Recognition | None:
        """End of stream: decide from what was seen (a completed rep if the stream ended on one)."""
        if self.result is None and self._leans:
            for detector in (self._hips, self._arms, self._press):
                for event in detector.finish():
                    if event.kind == "complete" and self.result is None:
                        self.result = self._decide(event.rep)
            if self.result is None:
                self.result = self._decide(None)
        return self.result

    def _curl_like(self, rep: RepFrames) -> bool:
        """A curl keeps the wrists below the neck; a bar racked on the back or pressed overhead lifts them above."""
        heights = [f.angles["shoulder_height"] for f in rep.frames if "shoulder_height" in f.angles]
        return not heights or min(heights) >= -self.config.curl_wrists_above_neck

    def _decide(self, rep: RepFrames | None) -> Recognition:
        after_s = (self._last_ts - (self._first_ts or self._last_ts)) / 1000
        return dataclasses.replace(self._judge(rep), after_s=round(after_s, 2))

    def _judge(self, rep: RepFrames | None) -> Recognition:
        lean = statistics.median(self._leans)
        horizontal = self.config.horizontal_lean_deg
        posture = _margin(lean, horizontal, 15.0)
        if lean >= horizontal:
            return Recognition("pushup", posture, f"body horizontal (trunk lean {lean:.0f}°)")
        if rep is None:
            return Recognition("squat", 0.5 * posture, f"upright (trunk lean {lean:.0f}°), no rep seen yet")
        hips, arms = (_relative_range(RepFrames(ex, rep.frames)) for ex in ("squat", "curl"))
        # The legs' movement is the larger of the hips' travel and the knees' bend: seen from the front the hips
        # travel little in 3D, and a curl never bends the knees through most of a squat.
        legs = max(hips, _knee_bend(rep.frames) / FULL_KNEE_BEND_DEG)
        if arms > legs and self._curl_like(rep):
            share = arms / (arms + legs)
            return Recognition("curl", posture * share, f"upright, an elbow moves ({arms:.1f} of a full curl; "
                               f"the legs {legs:.1f} of a full squat)")
        differences = sorted(abs(f.angles["hip_l"] - f.angles["hip_r"]) for f in rep.frames
                             if "hip_l" in f.angles and "hip_r" in f.angles)
        if not differences:
            return Recognition("squat", 0.5 * posture, "upright, the hips move (hip angles not seen)")
        difference = differences[int(0.9 * (len(differences) - 1))]
        split = self.config.lunge_hip_difference_deg
        stance = posture * _margin(difference, split, 15.0)
        if difference >= split:
            return Recognition("lunge", stance, f"the hips move, one bent and one extended ({difference:.0f}° apart)")
        return Recognition("squat", stance, f"the hips move, both bent alike ({difference:.0f}° apart)")


FULL_KNEE_BEND_DEG = 90.0
"""How far the knees bend over a typical full squat (standing ~170° to ~80°): the scale of the legs' movement."""


def _knee_bend(frames: Iterable[FrameMessage]) -> float:
    """Range of the knee angle over ``frames``, degrees."""
    knees = [f.angles["knee"] for f in frames if "knee" in f.angles]
    return max(knees) - min(knees) if knees else 0.0


def _relative_range(rep: RepFrames) -> float:
    """How far the exercise's depth signal moved over ``rep``, in typical full reps of that exercise."""
    series = rep.depth_series(DEPTH_SIGNAL[rep.exercise])
    return (max(series) - min(series)) / PRIOR_RANGE[rep.exercise] if series else 0.0


def recognise(frames: Iterable[FrameMessage], config: RecognitionConfig | None = None) -> Recognition | None:
    """The exercise of a recorded stream, decided within its first rep as it would be live."""
    recogniser = ExerciseRecogniser(config)
    for frame in frames:
        if recogniser.push(frame) is not None:
            break
    return recogniser.finish()
