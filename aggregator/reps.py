"""Per-station repetition detection over the per-frame phases.

Three layers, each small enough to reason about:

1. *Smoothing*: an exponential moving average of the phase probabilities, so
   one misclassified frame moves the estimate only part of the way.
2. *Hysteresis*: the stable phase changes only after the smoothed phase has
   held for ``min_phase_s``; the change is dated back to the first frame of
   that run, so timings are not delayed by the filter.
3. *Repetition logic* on stable-phase changes: a rep runs from leaving the top
   to returning to it. It is **complete** when it reached the bottom and both
   its start and its end lie in the top third of its own range of motion
   (the data set's convention: a clip that starts or ends near the top still
   counts); otherwise it is **partial** and counted separately.

Frames without a person are gaps: short ones are bridged, long ones end the
rep as partial. Time comes from the frames' capture timestamps, never from
the wall clock, so replays and ``formcheck analyze`` behave like live runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Exercise, FrameMessage, Phase

MOVING_PHASES: tuple[Phase, ...] = ("standing", "descending", "bottom", "ascending")


def by_exercise(squat: float, lunge: float, pushup: float, curl: float) -> Callable[[], dict[Exercise, float]]:
    """Typed default factory for per-exercise thresholds."""
    return lambda: {"squat": squat, "lunge": lunge, "pushup": pushup, "curl": curl}


class RepConfig(BaseModel):
    """Thresholds of the repetition state machine (seconds are capture time)."""

    model_config = ConfigDict(extra="forbid")

    smoothing: float = Field(
        0.5, gt=0, le=1, description="EMA weight of the newest frame's phase probabilities (1 = no smoothing)."
    )
    min_phase_s: float = Field(0.1, ge=0, description="A phase must hold this long before the state changes.")
    max_gap_s: float = Field(1.0, gt=0, description="Frames without a person bridged inside a rep.")
    max_rep_s: float = Field(20.0, gt=0, description="A rep not finished within this becomes partial.")
    min_rep_s: float = Field(0.4, ge=0, description="Shorter movements are not repetitions.")
    top_fraction: float = Field(
        2 / 3, gt=0, lt=1,
        description="A rep is complete when its start and its end are at least this far up its range of motion.",
    )
    edge_top_fraction: float = Field(
        0.75, gt=0, lt=1,
        description="The same, for a movement the stream cut off (already under way at the first frame, or open "
        "at the last): it must be within the top quarter, as the data set's ground truth counts clip edges.",
    )
    min_range: dict[Exercise, float] = Field(
        default_factory=by_exercise(squat=0.3, lunge=0.3, pushup=0.25, curl=40.0),
        description="Smallest range of the depth signal that counts as a movement at all, per exercise "
        "(squat/lunge: thigh lengths of hip travel; pushup: torso lengths of shoulder travel; curl: degrees of "
        "elbow angle).",
    )


@dataclass(frozen=True)
class DepthSignal:
    """The per-frame measure that is largest at the bottom of a rep."""

    angle: str
    sign: float

    def of(self, frame: FrameMessage) -> float | None:
        value = frame.angles.get(self.angle)
        return None if value is None else self.sign * value


# Squat depth is hip height against the knees (robust from the side, front and
# rear; the 3D knee angle is not from the rear). A push-up's depth is how low the
# shoulders are: with the head toward the camera the elbow angle is nearly straight
# again while the shoulders are only half way up. A curl's "bottom" is peak elbow
# flexion (the weight at the top); its rest position, arm extended, is "standing".
DEPTH_SIGNAL: dict[Exercise, DepthSignal] = {
    "squat": DepthSignal("hip_depth", 1.0),
    "lunge": DepthSignal("hip_depth", 1.0),
    "pushup": DepthSignal("shoulder_height", -1.0),
    "curl": DepthSignal("elbow", -1.0),
}

# Further signals a complete rep must also start and end near the top of: a push-up
# needs the arms straight as well as the shoulders up (a person can hold the shoulders
# high on bent arms, and the two disagree most where the camera sees them worst).
ALSO_AT_TOP: dict[Exercise, tuple[DepthSignal, ...]] = {
    "squat": (), "lunge": (), "pushup": (DepthSignal("elbow", -1.0),), "curl": (),
}


@dataclass
class RepFrames:
    """Frames of one movement, and what the state machine learned about it."""

    exercise: Exercise
    frames: list[FrameMessage] = field(default_factory=list)

    @property
    def reached_bottom(self) -> bool:
        """At least one frame was classified ``bottom``: a bounce counts, a half squat that turns early does not."""
        return any(f.phase == "bottom" for f in self.frames)

    def depth_series(self, signal: DepthSignal | None = None) -> list[float]:
        """Depth signal (default: the exercise's ``DEPTH_SIGNAL``) of each frame that has it (larger = deeper)."""
        signal = signal or DEPTH_SIGNAL[self.exercise]
        return [d for d in (signal.of(f) for f in self.frames) if d is not None]


@dataclass(frozen=True)
class RepEvent:
    """A movement the detector closed: complete rep or partial."""

    kind: Literal["complete", "partial"]
    rep: RepFrames
    reason: str


@dataclass
class _Stable:
    phase: Phase | None = None
    candidate: Phase | None = None
    candidate_since: int = 0  # index into the detector's frame history
    candidate_ts: int = 0


class RepDetector:
    """Feeds on one station's frames in ``seq`` order; emits :class:`RepEvent` s."""

    def __init__(self, exercise: Exercise, config: RepConfig | None = None) -> None:
        self.exercise = exercise
        self.config = config or RepConfig()
        self._ema: dict[Phase, float] = {}
        self._stable = _Stable()
        self._recent: list[FrameMessage] = []  # frames since the candidate phase began
        self._rep: RepFrames | None = None
        self._last_person_ts: int | None = None
        self._first_seq: int | None = None  # first frame with a person after a reset: where the stream starts
        # Highest position (smallest depth) of each signal since then: what "the top" is for a cut-off end.
        self._highest: dict[DepthSignal, float] = {}

    @property
    def in_rep(self) -> bool:
        return self._rep is not None

    def push(self, frame: FrameMessage) -> list[RepEvent]:
        events: list[RepEvent] = []
        if frame.phase == "no_person" or not frame.phase_p:
            if (self._rep is not None and self._last_person_ts is not None
                    and frame.ts - self._last_person_ts > self.config.max_gap_s * 1000):
                events.append(self._close("partial", "person left the frame"))
            if self._last_person_ts is None or frame.ts - self._last_person_ts > self.config.max_gap_s * 1000:
                self._ema.clear()
                self._stable = _Stable()
                self._recent.clear()
                self._first_seq = None
            return events
        if self._first_seq is None:
            self._first_seq = frame.seq
            self._highest.clear()
        for signal in (DEPTH_SIGNAL[self.exercise], *ALSO_AT_TOP[self.exercise]):
            value = signal.of(frame)
            if value is not None:
                self._highest[signal] = min(value, self._highest.get(signal, value))
        self._last_person_ts = frame.ts
        smoothed = self._smooth(frame)
        changed = self._update_stable(smoothed, frame)
        if self._rep is not None:
            self._rep.frames.append(frame)
        if changed is not None:
            events.extend(self._on_change(*changed))
        if self._rep is not None and frame.ts - self._rep.frames[0].ts > self.config.max_rep_s * 1000:
            events.append(self._close("partial", "rep took too long"))
        return events

    def flush(self) -> list[RepEvent]:
        """End of stream: close an open movement (complete if it is back in the top third)."""
        if self._rep is None:
            return []
        return [self._close_checked("end of stream", cut_end=True)]

    # -- layers ------------------------------------------------------------

    def _smooth(self, frame: FrameMessage) -> Phase:
        a = self.config.smoothing
        for phase in MOVING_PHASES:
            p = frame.phase_p.get(phase, 0.0)
            self._ema[phase] = p if phase not in self._ema else a * p + (1 - a) * self._ema[phase]
        return max(MOVING_PHASES, key=lambda ph: self._ema[ph])

    def _update_stable(self, smoothed: Phase, frame: FrameMessage) -> tuple[Phase | None, Phase, int] | None:
        """Returns (old, new, index of the first frame of the new phase in the rep) on a stable change."""
        st = self._stable
        if smoothed != st.candidate:
            st.candidate, st.candidate_ts = smoothed, frame.ts
            self._recent = []
        if st.candidate == st.phase:
            # No change pending: the run's frames are not needed (keeps memory flat while a phase holds).
            self._recent.clear()
            return None
        self._recent.append(frame)
        if st.phase is not None and frame.ts - st.candidate_ts < self.config.min_phase_s * 1000:
            return None
        old, st.phase = st.phase, st.candidate
        assert st.phase is not None
        return old, st.phase, len(self._recent)

    def _on_change(self, old: Phase | None, new: Phase, run_length: int) -> list[RepEvent]:
        events: list[RepEvent] = []
        run = self._recent[-run_length:]
        if new == "descending":
            if self._rep is not None:
                # Going down again without reaching the top: close the previous movement here.
                events.append(self._close_at_turn(run))
            self._start(run)
        elif new in ("bottom", "ascending") and self._rep is None:
            # Joined mid-movement (clip or camera started low): the range check makes it a partial.
            self._start(run)
        elif new == "standing" and self._rep is not None:
            # The rep ended where the standing run began; those frames belong to the next state.
            rep = self._rep
            if run_length and len(rep.frames) > run_length:
                del rep.frames[-run_length:]
            events.append(self._close_checked("back to the top"))
        return events

    # -- rep bookkeeping ---------------------------------------------------

    def _start(self, first_frames: Sequence[FrameMessage]) -> None:
        self._rep = RepFrames(exercise=self.exercise, frames=list(first_frames))

    def _close(self, kind: Literal["complete", "partial"], reason: str) -> RepEvent:
        assert self._rep is not None
        rep, self._rep = self._rep, None
        return RepEvent(kind=kind, rep=rep, reason=reason)

    def _close_at_turn(self, new_descent: Sequence[FrameMessage]) -> RepEvent:
        rep = self._rep
        assert rep is not None
        overlap = len(new_descent)
        if overlap and len(rep.frames) > overlap:
            del rep.frames[-overlap:]
        return self._close_checked("turned down again")

    def _fraction(self, cut: bool) -> float:
        return self.config.edge_top_fraction if cut else self.config.top_fraction

    def _close_checked(self, reason: str, *, cut_end: bool = False) -> RepEvent:
        """Close the open movement, complete only if it passes the range-of-motion checks.

        ``cut_end``: the stream ended with the movement open. A start or end the stream cut off is held to
        ``edge_top_fraction`` instead of ``top_fraction``: without frames beyond it, there is no return to
        the top to see, only how far up the movement got.
        """
        rep = self._rep
        assert rep is not None
        cut_start = rep.frames[0].seq == self._first_seq if rep.frames else False
        depth = rep.depth_series()
        duration_s = (rep.frames[-1].ts - rep.frames[0].ts) / 1000 if rep.frames else 0.0
        if not rep.reached_bottom:
            return self._close("partial", "never reached the bottom")
        if duration_s < self.config.min_rep_s:
            return self._close("partial", "too short to be a rep")
        if len(depth) < 3:
            return self._close("partial", "joint angle not visible")
        if max(depth) - min(depth[0], depth[-1]) < self.config.min_range.get(self.exercise, 0.0):
            return self._close("partial", "range of motion too small")
        for signal in (DEPTH_SIGNAL[self.exercise], *ALSO_AT_TOP[self.exercise]):
            series = rep.depth_series(signal)
            if len(series) < 3:
                continue
            deepest, top = max(series), min(series[0], series[-1])
            if series[0] > deepest - self._fraction(cut_start) * (deepest - top):
                return self._close("partial", "started below the top of its range")
            # A cut-off end is measured against the highest position of the whole stream: the rep's own
            # start may already have been on the way down.
            end_top = min(top, self._highest.get(signal, top)) if cut_end else top
            if series[-1] > deepest - self._fraction(cut_end) * (deepest - end_top):
                return self._close("partial", "ended below the top of its range")
        return self._close("complete", reason)
