"""Per-station repetition detection from the continuous pose signals.

A rep is segmented from the exercise's depth signal (larger = deeper: hip depth against the knees for a
squat or lunge, how low the shoulders are for a push-up, elbow flexion for a curl), not from the class of
any single frame: a member who goes down and back up has done a rep, whatever the classifier said.

1. *Smoothing*: an exponential moving average with a time constant in seconds (``smoothing_s``), so the
   filter means the same at 30 fps and at the 3-6 fps a Raspberry Pi's pose runs at.
2. *Turning points with hysteresis*: going down starts when the signal has risen ``hysteresis`` above its
   lowest value since the last top; the bottom is confirmed when it has fallen ``hysteresis`` below its
   highest value since. The hysteresis is the larger of an absolute floor per exercise (noise, foot
   shuffles) and a share of this person's own range of motion so far (``relative_hysteresis``): small
   people, front views and shallow squatters move the signal less, and it adapts to them.
3. *The top*: after the bottom the movement ends where the signal stops rising (no new high for
   ``top_hold_s``, or a new descent begins) in the top part of its range; a descent that begins lower down
   is a bounce in the bottom (or occlusion jolting the track) and the same rep goes on. The rep is
   **complete** when its start and its end both lie in the top part of its own range of motion
   (``top_fraction``; the data set's convention: a clip that starts or ends near the top still counts);
   otherwise, or when the stream, a long gap (person left) or ``max_rep_s`` cuts it, it is **partial**. An
   end the stream cut is judged against the smaller of the rep's range and the person's typical one.
   Depth is graded, not gated: a shallow rep is a rep.
4. *A hinge is not a squat*: a squat or lunge bends the knees as well as the hips; a movement whose knees did
   less than ``hinge_knee_share`` of the bending (bending over to pick up a bar or a bottle) is no rep, however
   far the hips went down. It is closed as partial and does not teach the person's range.
5. *The bottom* of a complete rep is the middle of its frames within ``bottom_plateau`` of its range from the
   deepest one: the data set's convention (for a paused rep, the middle of the pause), and steadier than the
   single deepest frame where the signal is flat and noisy at the bottom.

The classifier's per-frame phases are kept on the frames as evidence for grading and display; they decide
nothing here. Frames without a person are gaps: short ones are bridged, long ones end the movement as
partial. Time comes from the frames' capture timestamps, never from the wall clock, so replays and
``formcheck analyze`` behave like live runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from formcheck_protocol.messages import Exercise, FrameMessage


def by_exercise(squat: float, lunge: float, pushup: float, curl: float) -> Callable[[], dict[Exercise, float]]:
    """A default factory for a per-exercise setting."""
    return lambda: {"squat": squat, "lunge": lunge, "pushup": pushup, "curl": curl}


class RepConfig(BaseModel):
    """Thresholds of the repetition segmentation (seconds are capture time; depth in each exercise's units).

    The defaults are the values ``formcheck models evaluate-reps`` chose on the whole data set (its
    leave-one-source-out figures choose them without each held-out source: models/REPORT_reps.md).
    """

    model_config = ConfigDict(extra="forbid")

    smoothing_s: float = Field(
        0.2, ge=0, le=2, description="Time constant of the depth signal's smoothing, seconds (0 = none)."
    )
    hysteresis: dict[Exercise, float] = Field(
        default_factory=by_exercise(squat=0.08, lunge=0.12, pushup=0.12, curl=15.0),
        description="Smallest move of the depth signal that counts as going down or coming up, per exercise "
        "(squat/lunge: thigh lengths of hip travel; pushup: torso lengths of shoulder travel; curl: degrees of "
        "elbow angle).",
    )
    relative_hysteresis: float = Field(
        0.35, ge=0, lt=1,
        description="The hysteresis grows to this share of the person's typical range of motion so far.",
    )
    top_hold_s: float = Field(
        0.25, gt=0, description="After the bottom, the movement has reached the top when the signal has not "
        "risen further for this long.",
    )
    max_gap_s: float = Field(1.0, gt=0, description="Frames without a person bridged inside a rep.")
    max_rep_s: float = Field(20.0, gt=0, description="A rep not finished within this becomes partial.")
    min_rep_s: float = Field(0.4, ge=0, description="Shorter movements are not repetitions.")
    top_fraction: float = Field(
        0.55, gt=0, lt=1,
        description="A rep is complete when its start and its end are at least this far up its range of motion.",
    )
    edge_top_fraction: float = Field(
        0.75, gt=0, lt=1,
        description="The same, for a movement the stream cut off (already under way at the first frame, or open "
        "at the last): it must be within the top quarter, as the data set's ground truth counts clip edges.",
    )
    hinge_knee_share: float = Field(
        1 / 3, ge=0, lt=1,
        description="A squat or lunge movement whose knees did less than this share of the bending (the knees' "
        "largest flexion over the movement against it plus the hips' largest) is a hip hinge (bending over, "
        "picking up a bar or a bottle), not a rep; 0 = never.",
    )
    bottom_plateau: float = Field(
        0.1, ge=0, lt=1,
        description="A complete rep's bottom is the middle of its frames whose depth is within this share of the "
        "rep's range from the deepest (for a paused rep, the middle of the pause); 0 = the deepest frame.",
    )
    typical_reps: int = Field(
        3, ge=1, le=20, description="How many of the person's latest complete reps their typical range is "
        "taken from (the median).",
    )


@dataclass(frozen=True)
class DepthSignal:
    """The per-frame measure that is largest at the bottom of a rep.

    ``sign`` × the angle; with ``either`` the deeper of that angle and the ``either`` one (one side at a
    time: the arm that is curling), falling back to ``angle`` alone where a frame lacks the per-side ones.
    """

    angle: str
    sign: float
    either: str | None = None

    def of(self, frame: FrameMessage) -> float | None:
        value = frame.angles.get(self.angle)
        if self.either is not None:
            other = frame.angles.get(self.either)
            if value is not None and other is not None:
                return max(self.sign * value, self.sign * other)
            fallback = self.angle.removesuffix("_l")
            value = frame.angles.get(fallback)
        return None if value is None else self.sign * value


# Squat depth is hip height against the knees (robust from the side, front and
# rear; the 3D knee angle is not from the rear). A push-up's depth is how low the
# shoulders are: with the head toward the camera the elbow angle is nearly straight
# again while the shoulders are only half way up. A curl's "bottom" is peak elbow
# flexion (the weight at the top), of whichever arm is more bent: alternating curls are one rep per arm;
# its rest position, arms extended, is "standing".
DEPTH_SIGNAL: dict[Exercise, DepthSignal] = {
    "squat": DepthSignal("hip_depth", 1.0),
    "lunge": DepthSignal("hip_depth", 1.0),
    "pushup": DepthSignal("shoulder_height", -1.0),
    "curl": DepthSignal("elbow_l", -1.0, either="elbow_r"),
}

@dataclass(frozen=True)
class TopCheck:
    """A further signal a complete rep must also start and end near the top of."""

    signal: DepthSignal
    at_cut_start: bool
    """Also asked of a start the stream cut (with the clip-edge fraction), not only of a start it shows."""
    at_cut_end: bool
    """Also asked of an end the stream cut."""


# A push-up needs the arms straight as well as the shoulders up (a person can hold the shoulders high on bent
# arms, and the two disagree most where the camera sees them worst); where the stream cut the movement, the
# shoulders alone are judged. A squat needs the hips open as well as high: bending over to put the hands or the
# bar on the floor lifts the hips with the hip angle still closed, which does not finish a squat; and a stream
# that opens in a half squat is near the top by hip height, which moves little early in a descent, but not by
# the hip angle. Of three variants measured held out (models/REPORT_reps.md) this is the one that lowered no
# frame rate's figure: asking the hip angle of a cut end too lost a rep and four clips at 1 in 10 frames.
ALSO_AT_TOP: dict[Exercise, tuple[TopCheck, ...]] = {
    "squat": (TopCheck(DepthSignal("hip", -1.0), at_cut_start=True, at_cut_end=False),),
    "lunge": (),
    "pushup": (TopCheck(DepthSignal("elbow", -1.0), at_cut_start=False, at_cut_end=False),),
    "curl": (),
}

_AT_TOP = 0.05
"""Within this share of its range from the highest point, a frame is still at the top (where a rep starts/ends)."""

_STILL_RISING = 0.05
"""A rise smaller than this share of the hysteresis is holding still (the smoothing creeps on forever)."""

PRIOR_RANGE: dict[Exercise, float] = {"squat": 0.8, "lunge": 0.6, "pushup": 0.5, "curl": 100.0}
"""A typical full rep's range of the depth signal, used until the person has done a rep of their own."""


_BENDS_KNEES: frozenset[Exercise] = frozenset({"squat", "lunge"})
"""Exercises whose rep bends the knees as well as the hips: a movement that bends the hips alone is a hinge."""


def _knee_share(frames: list[FrameMessage]) -> float | None:
    """The knees' share of the bending over ``frames``: their largest flexion against it plus the hips' largest."""
    knee = max((180.0 - f.angles["knee"] for f in frames if "knee" in f.angles), default=None)
    hip = max((180.0 - f.angles["hip"] for f in frames if "hip" in f.angles), default=None)
    if knee is None or hip is None:
        return None
    knee, hip = max(knee, 0.0), max(hip, 0.0)
    return knee / (knee + hip) if knee + hip > 0 else None


@dataclass
class RepFrames:
    """Frames of one movement, and what the segmentation learned about it."""

    exercise: Exercise
    frames: list[FrameMessage] = field(default_factory=list)

    turned: bool = False
    """The depth signal turned: it went down and came back up by at least the hysteresis."""

    bottom: tuple[int, int] | None = None
    """First and last index in ``frames`` of the bottom (set when the detector closes the rep as complete)."""

    @property
    def bottom_frame(self) -> FrameMessage:
        """The middle of the bottom: what a rep's bottom frame means (for a paused rep, the middle of the pause)."""
        if self.bottom is None:
            raise ValueError("only a complete rep has a located bottom")
        return self.frames[middle(self.bottom)]

    @property
    def reached_bottom(self) -> bool:
        return self.turned

    def depth_series(self, signal: DepthSignal | None = None) -> list[float]:
        """Depth signal (default: the exercise's ``DEPTH_SIGNAL``) of each frame that has it (larger = deeper)."""
        signal = signal or DEPTH_SIGNAL[self.exercise]
        return [d for d in (signal.of(f) for f in self.frames) if d is not None]


def middle(span: tuple[int, int]) -> int:
    """The bottom's own frame in a located ``(first, last)`` span: its middle."""
    return (span[0] + span[1]) // 2


def locate_bottom(frames: Sequence[FrameMessage], signal: DepthSignal, plateau: float) -> tuple[int, int]:
    """First and last index in ``frames`` of those within ``plateau`` of the range from the deepest one."""
    seen = [(i, d) for i, f in enumerate(frames) if (d := signal.of(f)) is not None]
    if not seen:
        raise ValueError("no frame has the depth signal")
    deepest = max(d for _, d in seen)
    floor = deepest - plateau * (deepest - min(d for _, d in seen))
    near = [i for i, d in seen if d >= floor]
    return near[0], near[-1]


@dataclass(frozen=True)
class RepEvent:
    """A movement the detector closed: complete rep or partial."""

    kind: Literal["complete", "partial"]
    rep: RepFrames
    reason: str


@dataclass
class _Movement:
    """The open movement: from its top, through its deepest point so far."""

    rep: RepFrames
    start_depth: float  # smoothed depth at the top it started from
    cut_start: bool  # already under way at the first frame of the stream
    deepest: float
    turned: bool = False  # the bottom is confirmed: the signal has come up by the hysteresis
    highest_since_bottom: float = math.inf  # smallest depth since the bottom (the top it is returning to)
    highest_ts: int = 0  # when the frames' own depth last rose noticeably
    raw_highest: float = math.inf  # smallest depth of a frame since the bottom

    @property
    def rep_frames_seen(self) -> list[FrameMessage]:
        """Every frame the movement was fed, including those trimmed off its ends at its close."""
        return self.seen or self.rep.frames

    seen: list[FrameMessage] = field(default_factory=list)


class RepDetector:
    """Feeds on one station's frames in ``seq`` order; emits :class:`RepEvent` s."""

    def __init__(self, exercise: Exercise, config: RepConfig | None = None) -> None:
        self.exercise = exercise
        self.config = config or RepConfig()
        self._signal = DEPTH_SIGNAL[exercise]
        self._ranges: list[float] = []  # the person's latest complete reps' ranges: kept across gaps
        self._move: _Movement | None = None
        self._smoothed: float | None = None
        self._smoothed_ts = 0
        self._last_person_ts: int | None = None
        # Near the top: its lowest depth, and the frames since the signal was last close to it (where a
        # descent would start).
        self._top: float | None = None
        self._top_frames: list[FrameMessage] = []
        # Until the first movement: every frame since the stream began and its deepest value, in case the
        # stream began inside a rep and the first thing it shows is the way up.
        self._stream_start = True
        self._top_ts = 0  # when the stream's top was reached (while no movement has been seen)
        self._start_frames: list[FrameMessage] = []
        self._start_deepest = -math.inf

    @property
    def in_rep(self) -> bool:
        return self._move is not None

    # -- the person's own scale --------------------------------------------

    def typical_range(self) -> float:
        """Median range of motion of the person's latest complete reps (a prior before the first)."""
        if not self._ranges:
            return PRIOR_RANGE[self.exercise]
        ranked = sorted(self._ranges)
        return ranked[len(ranked) // 2]

    def hysteresis(self) -> float:
        """Smallest move that counts: the exercise's floor, or a share of the person's own range if larger."""
        floor = self.config.hysteresis.get(self.exercise, 0.0)
        if not self._ranges:
            return floor
        return max(floor, self.config.relative_hysteresis * self.typical_range())

    # -- frames -----------------------------------------------------------

    def push(self, frame: FrameMessage) -> list[RepEvent]:
        events: list[RepEvent] = []
        depth = self._signal.of(frame) if frame.phase != "no_person" else None
        if depth is None:
            if self._last_person_ts is not None and frame.ts - self._last_person_ts > self.config.max_gap_s * 1000:
                if self._move is not None:
                    events.append(self._close("partial", "person left the frame"))
                self._restart()
            return events
        self._last_person_ts = frame.ts
        value = self._smooth(depth, frame.ts)
        if self._move is None:
            self._between(frame, value)
        else:
            events.extend(self._moving(frame, value))
        if self._move is not None and frame.ts - self._move.rep.frames[0].ts > self.config.max_rep_s * 1000:
            events.append(self._close("partial", "rep took too long"))
        return events

    def finish(self) -> list[RepEvent]:
        """End of stream: close an open movement (complete if it is back in the top part of its range)."""
        if self._move is None:
            return []
        return [self._close_checked("end of stream", cut_end=True)]

    # -- layers ------------------------------------------------------------

    def _smooth(self, depth: float, ts: int) -> float:
        if self._smoothed is None or self.config.smoothing_s <= 0:
            self._smoothed = depth
        else:
            dt = max(0.0, (ts - self._smoothed_ts) / 1000)
            self._smoothed += (1.0 - math.exp(-dt / self.config.smoothing_s)) * (depth - self._smoothed)
        self._smoothed_ts = ts
        return self._smoothed

    def _restart(self) -> None:
        """A new stream (the person came back after a long gap); their typical range is kept."""
        self._smoothed = None
        self._smoothed_ts = 0
        self._last_person_ts = None
        self._top = None
        self._top_frames = []
        self._stream_start = True
        self._start_frames = []
        self._start_deepest = -math.inf

    def _between(self, frame: FrameMessage, value: float) -> None:
        """Near the top: track it; a rise of the hysteresis above it starts a movement."""
        h = self.hysteresis()
        if self._stream_start:
            self._start_frames.append(frame)
            self._start_deepest = max(self._start_deepest, value)
            if self._start_deepest - value >= h:
                # Came up from deep in the first frames: the end of a rep the stream cut off.
                first = self._signal.of(self._start_frames[0])
                self._move = _Movement(
                    rep=RepFrames(exercise=self.exercise, frames=list(self._start_frames), turned=True),
                    start_depth=self._start_deepest if first is None else first, cut_start=True,
                    deepest=self._start_deepest, turned=True, highest_since_bottom=value, highest_ts=frame.ts,
                    raw_highest=value if (raw := self._signal.of(frame)) is None else raw,
                )
                self._end_stream_start()
                return
            if frame.ts - self._start_frames[0].ts > self.config.max_rep_s * 1000:
                self._end_stream_start()
        if self._top is None or value < self._top:
            self._top = value
        if value <= self._top + h / 3:
            # Still at the top: earlier frames cannot start the next descent, except the last few the
            # smoothing lags behind (the rep's first frame is placed on the frames' own depth at its close).
            lookback_ms = (3 * self.config.smoothing_s + 0.1) * 1000
            self._top_frames = [f for f in self._top_frames if frame.ts - f.ts <= lookback_ms]
        elif self._top_frames and frame.ts - self._top_frames[0].ts > self.config.max_rep_s * 1000:
            # Hovering between the top and a movement for longer than any rep: memory stays bounded.
            self._top_frames = self._top_frames[len(self._top_frames) // 2:]
        self._top_frames.append(frame)
        if self._stream_start and value == self._top:
            self._top_ts = frame.ts
        if value - self._top >= h:
            # Going down from a top the stream began at: the stream may have cut off the start of the descent.
            hold_ms = self.config.top_hold_s * 1000
            cut_start = self._stream_start and self._top_ts - self._start_frames[0].ts <= hold_ms
            frames = self._start_frames if cut_start else self._top_frames
            self._move = _Movement(
                rep=RepFrames(exercise=self.exercise, frames=list(frames)),
                start_depth=self._top, cut_start=cut_start, deepest=value,
            )
            self._end_stream_start()

    def _end_stream_start(self) -> None:
        self._stream_start = False
        self._start_frames = []

    def _moving(self, frame: FrameMessage, value: float) -> list[RepEvent]:
        move = self._move
        assert move is not None
        move.rep.frames.append(frame)
        h = self.hysteresis()
        if not move.turned:
            move.deepest = max(move.deepest, value)
            if move.deepest - value >= h:
                move.turned = move.rep.turned = True
                move.highest_since_bottom, move.highest_ts = value, frame.ts
                raw = self._signal.of(frame)
                move.raw_highest = value if raw is None else raw
            return []
        move.highest_since_bottom = min(move.highest_since_bottom, value)
        # Whether the body is still coming up is read on the frame's own depth: the smoothed signal lags
        # and would hold the rep open for most of a second after the person is up.
        raw = self._signal.of(frame)
        if raw is not None and raw < move.raw_highest - h * _STILL_RISING:
            move.raw_highest, move.highest_ts = raw, frame.ts  # still coming up: the hold starts again
        going_down_again = value - move.highest_since_bottom >= h
        top_part = move.deepest - self.config.top_fraction * (move.deepest - move.start_depth)
        near_top = move.highest_since_bottom <= top_part
        if going_down_again and not (near_top or move.raw_highest <= top_part):
            # Down again before it was back in the top part of its range (on the smoothed signal or, as it lags
            # behind a quick turn, on the frames' own depth): a bounce in the bottom, or the track jumping while
            # plates or a rack hide the body. Still the same rep, which must now come up again.
            move.turned = False
            move.deepest = max(move.deepest, value)
            move.highest_since_bottom = move.raw_highest = math.inf
            return []
        stopped = near_top and frame.ts - move.highest_ts >= self.config.top_hold_s * 1000
        if not (going_down_again or stopped):
            return []
        # The movement ended at its highest point after the bottom; the frames after its last one at the top
        # (placed on their own depth by _trimmed) begin what comes next.
        event = self._close_checked("turned down again" if going_down_again else "back to the top")
        last = event.rep.frames[-1].seq
        self._top = move.highest_since_bottom
        self._top_frames = [f for f in move.rep_frames_seen if f.seq >= last]
        if going_down_again:
            self._move = _Movement(
                rep=RepFrames(exercise=self.exercise, frames=list(self._top_frames)),
                start_depth=self._top, cut_start=False, deepest=value,
            )
        return [event]

    # -- closing -------------------------------------------------------------

    def _close(self, kind: Literal["complete", "partial"], reason: str) -> RepEvent:
        assert self._move is not None
        rep, self._move = self._move.rep, None
        return RepEvent(kind=kind, rep=rep, reason=reason)

    def _trimmed(self, frames: list[FrameMessage]) -> list[FrameMessage]:
        """The movement itself: from the last frame at its top before the deepest one to the first after it.

        The turning points are found on the smoothed signal, which lags; the boundaries are placed on the
        frames' own depth: within ``_AT_TOP`` of the range from the highest point on each side.
        """
        raw = [self._signal.of(f) for f in frames]
        seen = [(i, v) for i, v in enumerate(raw) if v is not None]
        if len(seen) < 3:
            return frames
        bottom, deepest = max(seen, key=lambda iv: iv[1])
        top_before = min(v for i, v in seen if i <= bottom)
        top_after = min(v for i, v in seen if i >= bottom)
        tolerance = _AT_TOP * (deepest - min(top_before, top_after))
        start = max(i for i, v in seen if i <= bottom and v <= top_before + tolerance)
        end = min(i for i, v in seen if i >= bottom and v <= top_after + tolerance)
        return frames[start:end + 1]

    def _fraction(self, cut: bool) -> float:
        return self.config.edge_top_fraction if cut else self.config.top_fraction

    def _close_checked(self, reason: str, *, cut_end: bool = False) -> RepEvent:
        """Close the open movement: complete only if it turned and starts and ends near the top of its range."""
        move = self._move
        assert move is not None
        rep = move.rep
        if not move.turned:
            return self._close("partial", "never came back up")
        move.seen = list(rep.frames)
        rep.frames = self._trimmed(rep.frames)
        duration_s = (rep.frames[-1].ts - rep.frames[0].ts) / 1000
        if duration_s < self.config.min_rep_s:
            return self._close("partial", "too short to be a rep")
        share = _knee_share(rep.frames) if self.exercise in _BENDS_KNEES else None
        if share is not None and share < self.config.hinge_knee_share:
            return self._close("partial", f"a hip hinge, not a rep (the knees did {share:.0%} of the bending)")
        checks = (TopCheck(self._signal, at_cut_start=True, at_cut_end=True), *ALSO_AT_TOP[self.exercise])
        for check in checks:
            main = check.signal is self._signal
            series = rep.depth_series(check.signal)
            if len(series) < 3:
                continue
            deepest, top = max(series), min(series[0], series[-1])
            span = deepest - top
            # Where the stream cut the end, the way back up is judged against the smaller of this rep's range and
            # the person's typical one (the main signal's): a start deeper than usual (arms hanging fully straight
            # after a rest) must not make a normal return look short.
            end_span = min(span, self.typical_range()) if main and cut_end and self._ranges else span
            judged_start = check.at_cut_start or not move.cut_start
            if judged_start and series[0] > deepest - self._fraction(move.cut_start) * span:
                return self._close("partial", "started below the top of its range")
            if (check.at_cut_end or not cut_end) and series[-1] > deepest - self._fraction(cut_end) * end_span:
                return self._close("partial", "ended below the top of its range")
        series = rep.depth_series()
        self._ranges = [*self._ranges, max(series) - min(series[0], series[-1])]
        self._ranges = self._ranges[-self.config.typical_reps:]
        rep.bottom = locate_bottom(rep.frames, self._signal, self.config.bottom_plateau)
        return self._close("complete", reason)
