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
   or pressing it overhead lifts them above) and the upper arms hang by the trunk (a curl bends the elbow
   with the upper arm still; holding a bar on the back spreads the elbows away from the body). Without the
   feet in the picture (a camera framing the upper body) the pose model guesses the legs: a movement of the
   hips then counts only when a second follows with no curl between them, and beside an arm's movement the
   legs count as still.
3. *Squat or lunge?* In a lunge one hip is bent and the other extended at the bottom; in a squat both bend
   alike: the difference between the two hip angles over that first rep, and the more open hip at its bottom
   (a lunge's rear hip is nearly straight there; a far leg the pose puts wrongly can make a squat's hips differ,
   but not straighten one at the bottom of a squat).

The thresholds (``RecognitionConfig``) were chosen inside leave-one-source-out folds
(``formcheck models evaluate-reps``); the confidence is how far the deciding measure lies from its threshold.
The rep detectors do not depend on the thresholds (:class:`MovementLog`); a :class:`_Decision` applies one set
of them to the movements, so the evaluation runs the detectors once per clip for every candidate.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from formcheck_aggregator.reps import DEPTH_SIGNAL, PRIOR_RANGE, RepConfig, RepDetector, RepFrames, locate_bottom
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
    lunge_rear_hip_deg: float = Field(
        120.0, gt=0, lt=180, description="The more open hip angle at the bottom of the first rep (median over the "
        "rep's bottom frames) at or above which a squat-like rep with hips that differ is a lunge: the rear hip of "
        "a lunge is nearly straight there, both hips of a squat are bent."
    )
    curl_wrists_above_neck: float = Field(
        0.1, ge=0, le=1, description="Torso lengths the wrists may rise above the neck in an arm movement that is "
        "a curl; one that lifts them higher (racking a bar on the back, pressing it overhead) is not a curl rep."
    )
    curl_upper_arm_deg: float = Field(
        50.0, gt=0, lt=180, description="Angle between the upper arm and the trunk (hip-shoulder-elbow, median "
        "over the movement) above which an arm movement is not a curl: a curl keeps the upper arm by the trunk."
    )
    feet_seen_visibility: float = Field(
        0.5, ge=0, le=1, description="Visibility of the better-seen ankle (median over a movement of the hips) "
        "below which the feet are out of the picture: the pose model then guesses the legs, so such a movement "
        "names a squat or lunge only when a second one follows with no curl between them, and an arm movement is "
        "judged as if the legs were still."
    )
    max_s: float = Field(
        30.0, gt=0, description="Capture time (seconds) from the person's first frame after which the exercise is "
        "named from what was seen, even without a completed rep: the same wait at a Pi's 3 frames/s as at 30."
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


MovementKind = Literal["hips", "press", "arms", "end"]
"""Which detector completed a movement; ``end``: the time limit (``max_s``) or the stream's end, not a rep."""


@dataclass
class Movement:
    """A movement one of the three detectors completed, with the measures recognition asks of it.

    It does not depend on :class:`RecognitionConfig`: the thresholds are applied to it by :class:`_Decision`, so
    the evaluation runs the detectors once per clip and tries every candidate threshold on the same movements.
    """

    kind: MovementKind
    rep: RepFrames | None
    """None for an ``end``."""
    lean: float
    """Median trunk lean over every frame with a person up to this movement."""
    after_s: float
    """Capture time from the person's first frame to this movement."""
    at_end: bool = False
    """Completed by the end of the stream: judged whatever it is (there will be no other)."""
    _measures: dict[str, float | None] = field(default_factory=dict, repr=False)

    def measure(self, name: str) -> float | None:
        """One of ``_MEASURES`` of this movement's frames, computed once."""
        if name not in self._measures:
            self._measures[name] = _MEASURES[name](self.rep.frames) if self.rep is not None else None
        return self._measures[name]


class MovementLog:
    """The config-independent half of recognition: the person's frames through three rep detectors."""

    def __init__(self) -> None:
        self._hips = RepDetector("squat")
        self._arms = RepDetector("curl")
        self._press = RepDetector("pushup")
        self.leans: list[float] = []
        self._first_ts: int | None = None
        self._last_ts = 0

    def push(self, frame: FrameMessage) -> list[Movement]:
        """Movements completed by ``frame`` (hips, then press, then arms: the order recognition asks in)."""
        if frame.phase == "no_person" or "trunk_lean" not in frame.angles:
            return []
        self.leans.append(frame.angles["trunk_lean"])
        if self._first_ts is None:
            self._first_ts = frame.ts
        self._last_ts = frame.ts
        return [self._movement(kind, event.rep) for kind, detector in self._detectors()
                for event in detector.push(frame) if event.kind == "complete"]

    def finish(self) -> list[Movement]:
        """End of stream: reps the end completed (hips, arms, then press), then the end itself."""
        if not self.leans:
            return []
        order: tuple[tuple[MovementKind, RepDetector], ...] = (
            ("hips", self._hips), ("arms", self._arms), ("press", self._press))
        ends = [self._movement(kind, event.rep, at_end=True)
                for kind, detector in order for event in detector.finish() if event.kind == "complete"]
        return [*ends, self.limit()]

    @property
    def seen_s(self) -> float:
        """Capture time from the person's first frame to the latest."""
        return (self._last_ts - (self._first_ts or self._last_ts)) / 1000

    def limit(self) -> Movement:
        """The time limit reached now, or the stream's end: decide from what was seen."""
        return self._movement("end", None, at_end=True)

    def _detectors(self) -> tuple[tuple[MovementKind, RepDetector], ...]:
        return (("hips", self._hips), ("press", self._press), ("arms", self._arms))

    def _movement(self, kind: MovementKind, rep: RepFrames | None, *, at_end: bool = False) -> Movement:
        return Movement(kind, rep, statistics.median(self.leans), round(self.seen_s, 2), at_end)


class _Decision:
    """The config-dependent half: which movement decides, and what it names."""

    def __init__(self, config: RecognitionConfig) -> None:
        self.config = config
        self._arm_reps = 0
        self._unseen_hips = 0

    def consider(self, movement: Movement) -> Recognition | None:
        if movement.at_end:
            return self._judge(movement)
        if movement.kind == "hips":
            if self._feet_seen(movement):
                return self._judge(movement)
            # With the feet out of the picture the legs' angles are the pose model's guess: a second such movement
            # in a row (no curl between them) is taken for the legs'.
            self._unseen_hips += 1
            return self._judge(movement) if self._unseen_hips >= 2 else None
        if movement.kind == "press":
            # A push-up is told by the body's lean alone; its own rep only says when the first rep is done.
            return self._judge(movement) if movement.lean >= self.config.horizontal_lean_deg else None
        if self._curl_like(movement):
            self._unseen_hips = 0
            # One arm movement is often setting up (taking the bar, gripping the handles): a curl is decided on
            # its second rep, unless a rep of the hips comes first.
            self._arm_reps += 1
            if self._arm_reps >= 2:
                return self._judge(movement)
        return None

    def _curl_like(self, movement: Movement) -> bool:
        """A curl keeps the wrists below the neck (a bar racked on the back or pressed overhead lifts them above)
        and the upper arms by the trunk (holding a bar on the back spreads the elbows)."""
        highest = movement.measure("wrists_highest")
        if highest is not None and highest < -self.config.curl_wrists_above_neck:
            return False
        # Frames from edges older than the "shoulder" measure lack it: the wrists alone decide there.
        upper_arm = movement.measure("upper_arm")
        return upper_arm is None or upper_arm <= self.config.curl_upper_arm_deg

    def _feet_seen(self, movement: Movement) -> bool:
        """Frames from edges older than the ``ankle_vis`` measure lack it: the feet count as seen there."""
        ankles = movement.measure("feet_visibility")
        return ankles is None or ankles >= self.config.feet_seen_visibility

    def _judge(self, movement: Movement) -> Recognition:
        return dataclasses.replace(self._name(movement), after_s=movement.after_s)

    def _name(self, movement: Movement) -> Recognition:
        lean = movement.lean
        horizontal = self.config.horizontal_lean_deg
        posture = _margin(lean, horizontal, 15.0)
        if lean >= horizontal:
            return Recognition("pushup", posture, f"body horizontal (trunk lean {lean:.0f}°)")
        if movement.rep is None:
            return Recognition("squat", 0.5 * posture, f"upright (trunk lean {lean:.0f}°), no rep seen yet")
        arms = movement.measure("arms_range") or 0.0
        # The legs' movement is the larger of the hips' travel and the knees' bend: seen from the front the hips
        # travel little in 3D, and a curl never bends the knees through most of a squat. Without the feet in the
        # picture (a camera framing the upper body) both are the pose model's guess: beside an arm's movement,
        # the legs count as still.
        legs = max(movement.measure("hips_range") or 0.0, (movement.measure("knee_bend") or 0.0) / FULL_KNEE_BEND_DEG)
        if movement.kind == "arms" and not self._feet_seen(movement):
            legs = 0.0
        if arms > legs and self._curl_like(movement):
            share = arms / (arms + legs)
            return Recognition("curl", posture * share, f"upright, an elbow moves ({arms:.1f} of a full curl; "
                               f"the legs {legs:.1f} of a full squat)")
        difference = movement.measure("hip_difference")
        if difference is None:
            return Recognition("squat", 0.5 * posture, "upright, the hips move (hip angles not seen)")
        split = self.config.lunge_hip_difference_deg
        stance = posture * _margin(difference, split, 15.0)
        if difference < split:
            return Recognition("squat", stance, f"the hips move, both bent alike ({difference:.0f}° apart)")
        rear = movement.measure("rear_hip")
        straight = self.config.lunge_rear_hip_deg
        if rear is not None and rear < straight:
            return Recognition("squat", posture * _margin(rear, straight, 15.0),
                               f"the hips move, both bent at the bottom ({difference:.0f}° apart, the more open "
                               f"{rear:.0f}°)")
        if rear is not None:
            stance = min(stance, posture * _margin(rear, straight, 15.0))
        return Recognition("lunge", stance, f"the hips move, one bent and one extended ({difference:.0f}° apart)")


class ExerciseRecogniser:
    """Feed a station's frames in order; :meth:`push` returns the recognition once it is decided."""

    def __init__(self, config: RecognitionConfig | None = None) -> None:
        self.config = config or RecognitionConfig()
        self._log = MovementLog()
        self._decision = _Decision(self.config)
        self.result: Recognition | None = None

    def push(self, frame: FrameMessage) -> Recognition | None:
        if self.result is None:
            self._consider(self._log.push(frame))
            if self.result is None and self._log.seen_s >= self.config.max_s:
                self._consider([self._log.limit()])
        return self.result

    def finish(self) -> Recognition | None:
        """End of stream: decide from what was seen (a completed rep if the stream ended on one)."""
        if self.result is None:
            self._consider(self._log.finish())
        return self.result

    def _consider(self, movements: Iterable[Movement]) -> None:
        for movement in movements:
            self.result = self._decision.consider(movement)
            if self.result is not None:
                return


_BOTTOM_PLATEAU = RepConfig().bottom_plateau
"""Recognition's detectors run with the counter's defaults: its bottom is theirs."""

FULL_KNEE_BEND_DEG = 90.0
"""How far the knees bend over a typical full squat (standing ~170° to ~80°): the scale of the legs' movement."""


def _knee_bend(frames: Iterable[FrameMessage]) -> float:
    """Range of the knee angle over ``frames``, degrees."""
    knees = [f.angles["knee"] for f in frames if "knee" in f.angles]
    return max(knees) - min(knees) if knees else 0.0


def _open_hip_at_bottom(frames: Sequence[FrameMessage]) -> float | None:
    """Median of the more open hip angle over the bottom of the hips' movement (where the rep counter puts it)."""
    with_hips = [f for f in frames if "hip_l" in f.angles and "hip_r" in f.angles]
    if not any(DEPTH_SIGNAL["squat"].of(f) is not None for f in with_hips):
        return None
    first, last = locate_bottom(with_hips, DEPTH_SIGNAL["squat"], _BOTTOM_PLATEAU)
    return statistics.median(max(f.angles["hip_l"], f.angles["hip_r"]) for f in with_hips[first:last + 1])


def _relative_range(rep: RepFrames) -> float:
    """How far the exercise's depth signal moved over ``rep``, in typical full reps of that exercise."""
    series = rep.depth_series(DEPTH_SIGNAL[rep.exercise])
    return (max(series) - min(series)) / PRIOR_RANGE[rep.exercise] if series else 0.0


def _hip_difference(frames: Sequence[FrameMessage]) -> float | None:
    """90th percentile over ``frames`` of the difference between the left and right hip angles."""
    differences = sorted(abs(f.angles["hip_l"] - f.angles["hip_r"]) for f in frames
                         if "hip_l" in f.angles and "hip_r" in f.angles)
    return differences[int(0.9 * (len(differences) - 1))] if differences else None


def _wrists_highest(frames: Sequence[FrameMessage]) -> float | None:
    """The wrists' highest point as ``shoulder_height`` measures it (torso lengths below the neck; above is < 0)."""
    heights = [f.angles["shoulder_height"] for f in frames if "shoulder_height" in f.angles]
    return min(heights) if heights else None


def _feet_visibility(frames: Sequence[FrameMessage]) -> float | None:
    """Median over ``frames`` of the better-seen ankle's visibility (``ankle_vis``)."""
    seen = [f.angles["ankle_vis"] for f in frames if "ankle_vis" in f.angles]
    return statistics.median(seen) if seen else None


def _upper_arm(frames: Sequence[FrameMessage]) -> float | None:
    """Median angle between the upper arms and the trunk (``shoulder``, hip-shoulder-elbow)."""
    angles = [f.angles["shoulder"] for f in frames if "shoulder" in f.angles]
    return statistics.median(angles) if angles else None


_MEASURES: dict[str, Callable[[Sequence[FrameMessage]], float | None]] = {
    "hips_range": lambda frames: _relative_range(RepFrames("squat", list(frames))),
    "arms_range": lambda frames: _relative_range(RepFrames("curl", list(frames))),
    "knee_bend": _knee_bend,
    "hip_difference": _hip_difference,
    "wrists_highest": _wrists_highest,
    "upper_arm": _upper_arm,
    "rear_hip": _open_hip_at_bottom,
    "feet_visibility": _feet_visibility,
}


def recognise_each(frames: Iterable[FrameMessage], configs: Sequence[RecognitionConfig]) -> list[Recognition | None]:
    """What :func:`recognise` names under each of ``configs`` (which share ``max_s``), with the rep
    detectors run once: the evaluation tries every candidate threshold this way."""
    limits = {config.max_s for config in configs}
    if len(limits) > 1:
        raise ValueError(f"configs differ in max_s ({sorted(limits)}): recognise them one at a time")
    log, movements, limited = MovementLog(), [], not limits
    for frame in frames:
        movements += log.push(frame)
        if not limited and log.seen_s >= min(limits):
            movements.append(log.limit())
            limited = True
    movements += log.finish()
    results: list[Recognition | None] = []
    for config in configs:
        decision = _Decision(config)
        results.append(next((r for m in movements if (r := decision.consider(m)) is not None), None))
    return results


def recognise(frames: Iterable[FrameMessage], config: RecognitionConfig | None = None) -> Recognition | None:
    """The exercise of a recorded stream, decided within its first rep as it would be live."""
    recogniser = ExerciseRecogniser(config)
    for frame in frames:
        if recogniser.push(frame) is not None:
            break
    return recogniser.finish()
