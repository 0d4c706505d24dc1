"""Synthetic squat frame streams for the aggregator's unit tests.

A clip is described by segments, ``(phase, seconds)`` or ``(phase, seconds, {options})``::

    clip = squat_clip([("standing", 1.0), ("descending", 0.8), ("bottom", 0.3), ("ascending", 0.8),
                       ("standing", 1.0)])

and comes out as :class:`FrameMessage` s at 30 fps, shaped like the edge node's
(``edge_node/formcheck_edge/processor.py``): rounded angles, ``phase_p`` with most of the mass
on the labelled phase, and no-person frames with no probabilities or angles.

The depth signal moves with the phase: ``hip_depth`` sits at ``top`` (−1.0)
while standing, moves linearly to ``bottom`` (+0.1) while descending, holds
there at the bottom and moves back while ascending; the knee angle follows it
(170° standing, 70° at the bottom). Each segment starts where the previous one
ended; the options ``start`` (first clip segment only) and ``to`` (any
movement segment) bend that, e.g. a descent that stops at ``to=-0.5``.
Per-segment options ``form`` ("bad"), ``bad_p`` and ``faults`` mark every
frame of the segment. :func:`flip`, :func:`mark` and :func:`shift_ts` alter
single frames afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from formcheck_protocol.messages import PHASES, Exercise, Fault, FrameMessage, Phase

FPS = 30
NODE = "pi-squat-1"
BOOT = "0123456789abcdef"
TS0 = 1_763_700_000_000
TOP = -1.0        # hip_depth standing: hips a thigh length above the knees
BOTTOM = 0.1      # hip_depth at the bottom of a full squat: hips just below the knees
KNEE_TOP = 170.0
KNEE_BOTTOM = 70.0
P_MAIN = 0.9      # probability on the labelled phase; the rest is spread over the other phases

Segment = tuple[Phase, float] | tuple[Phase, float, dict[str, Any]]


@dataclass
class Span:
    """Where one segment landed in the clip: frames ``start`` (inclusive) to ``end`` (exclusive)."""

    phase: Phase
    start: int
    end: int

    @property
    def last(self) -> int:
        return self.end - 1


@dataclass
class Clip:
    frames: list[FrameMessage]
    spans: list[Span] = field(default_factory=list)

    def span(self, phase: Phase, occurrence: int = 0) -> Span:
        """The ``occurrence``-th (0-based) segment of that phase."""
        return [s for s in self.spans if s.phase == phase][occurrence]

    @property
    def next_seq(self) -> int:
        return self.frames[-1].seq + 1

    @property
    def next_ts(self) -> int:
        """Capture time one frame after the clip's last frame (at 30 fps)."""
        return self.frames[-1].ts + round(1000 / FPS)

    def index_of_seq(self, seq: int) -> int:
        return next(i for i, f in enumerate(self.frames) if f.seq == seq)

    def index_of_ts(self, ts: int) -> int:
        return next(i for i, f in enumerate(self.frames) if f.ts == ts)


def phase_probabilities(phase: Phase, p_main: float = P_MAIN) -> dict[Phase, float]:
    rest = round((1.0 - p_main) / (len(PHASES) - 1), 4)
    return {ph: (p_main if ph == phase else rest) for ph in PHASES}


def knee_for(depth: float) -> float:
    t = (depth - TOP) / (BOTTOM - TOP)
    return KNEE_TOP + t * (KNEE_BOTTOM - KNEE_TOP)


def angles_for(depth: float) -> dict[str, float]:
    t = (depth - TOP) / (BOTTOM - TOP)
    return {
        "hip_depth": round(depth, 3),
        "knee": round(knee_for(depth), 3),
        "hip": round(175.0 - t * 105.0, 3),
        "trunk_lean": round(8.0 + t * 27.0, 3),
        "knee_valgus": 2.0,
        "knee_width": 1.1,
        "view_yaw": 15.0,
    }


def make_frame(
    *, node: str, boot: str, seq: int, ts: int, exercise: Exercise, phase: Phase, depth: float | None,
    form: str = "good", bad_p: float | None = None, faults: Iterable[Fault] = (), p_main: float = P_MAIN,
) -> FrameMessage:
    if phase == "no_person":
        return FrameMessage(node=node, boot=boot, seq=seq, ts=ts, exercise=exercise, phase="no_person",
                            form="good", bad_p=0.0, vis=0.0)
    assert depth is not None
    if bad_p is None:
        bad_p = 0.85 if form == "bad" else 0.05
    return FrameMessage.model_validate({
        "node": node, "boot": boot, "seq": seq, "ts": ts, "exercise": exercise, "phase": phase,
        "phase_p": phase_probabilities(phase, p_main), "form": form, "bad_p": bad_p, "faults": list(faults),
        "angles": angles_for(depth), "vis": 0.93,
    })


def _default_start(phase: Phase, top: float, bottom: float) -> float:
    return bottom if phase in ("bottom", "ascending") else top


def squat_clip(
    segments: Sequence[Segment], *, node: str = NODE, boot: str = BOOT, seq0: int = 0, ts0: int = TS0,
    fps: int = FPS, exercise: Exercise = "squat", top: float = TOP, bottom: float = BOTTOM,
    p_main: float = P_MAIN,
) -> Clip:
    """Frames for the segments; frame ``i`` has ``seq0 + i`` and ``ts0 + round(i * 1000 / fps)``."""
    frames: list[FrameMessage] = []
    spans: list[Span] = []
    depth: float | None = None
    for segment in segments:
        phase, seconds = segment[0], segment[1]
        opts: dict[str, Any] = dict(segment[2]) if len(segment) > 2 else {}  # type: ignore[misc]
        unknown = set(opts) - {"start", "to", "form", "bad_p", "faults"}
        assert not unknown, f"unknown segment options {unknown}"
        n = max(1, round(seconds * fps))
        if depth is None:
            depth = float(opts.get("start", _default_start(phase, top, bottom)))
        begin = depth
        if phase == "descending":
            end = float(opts.get("to", bottom))
        elif phase == "ascending":
            end = float(opts.get("to", top))
        elif phase in ("standing", "bottom"):
            end = float(opts.get("to", begin))
        else:  # no_person: the body is out of sight, the next segment goes on from where it was
            end = begin
        start_index = len(frames)
        for k in range(n):
            i = start_index + k
            if phase in ("descending", "ascending"):
                d = begin + (end - begin) * (k + 1) / (n + 1)   # strictly between the two ends
            else:
                d = begin + (end - begin) * k / max(1, n - 1) if end != begin else begin
            frames.append(make_frame(
                node=node, boot=boot, seq=seq0 + i, ts=ts0 + round(i * 1000 / fps), exercise=exercise,
                phase=phase, depth=None if phase == "no_person" else d, form=opts.get("form", "good"),
                bad_p=opts.get("bad_p"), faults=opts.get("faults", ()), p_main=p_main,
            ))
        depth = end
        spans.append(Span(phase, start_index, len(frames)))
    return Clip(frames, spans)


def rep_segments(
    n: int = 1, *, stand: float = 1.0, down: float = 0.8, hold: float = 0.3, up: float = 0.8,
    options: dict[str, Any] | None = None,
) -> list[Segment]:
    """``n`` clean squats, standing before, between and after them."""
    opts = options or {}
    segments: list[Segment] = [("standing", stand)]
    for _ in range(n):
        segments += [("descending", down, opts), ("bottom", hold, opts), ("ascending", up, opts),
                     ("standing", stand)]
    return segments


def flip(frames: list[FrameMessage], index: int, phase: Phase, p_main: float = P_MAIN) -> None:
    """Misclassify one frame (in place): label and probabilities say ``phase``, the body does not."""
    frame = frames[index]
    if phase == "no_person":
        frames[index] = FrameMessage(node=frame.node, boot=frame.boot, seq=frame.seq, ts=frame.ts,
                                     exercise=frame.exercise, phase="no_person", form="good", bad_p=0.0, vis=0.0)
    else:
        frames[index] = _revalidate(frame, phase=phase, phase_p=phase_probabilities(phase, p_main))


def mark(
    frames: list[FrameMessage], indices: Iterable[int], *, form: str | None = None, bad_p: float | None = None,
    faults: Iterable[Fault] | None = None,
) -> None:
    """Set form / bad_p / faults of some frames (in place)."""
    for i in indices:
        update: dict[str, Any] = {}
        if form is not None:
            update["form"] = form
            update["bad_p"] = 0.85 if form == "bad" else 0.05
        if bad_p is not None:
            update["bad_p"] = bad_p
        if faults is not None:
            update["faults"] = list(faults)
        frames[i] = _revalidate(frames[i], **update)


def shift_ts(frames: list[FrameMessage], start: int, delta_ms: int) -> None:
    """Add ``delta_ms`` to the capture time of every frame from ``start`` on (an edge clock step)."""
    for i in range(start, len(frames)):
        frames[i] = _revalidate(frames[i], ts=frames[i].ts + delta_ms)


def restamp(frames: Iterable[FrameMessage], **update: Any) -> list[FrameMessage]:
    """Copies with some fields replaced (node, boot, exercise, ...), validated again."""
    return [_revalidate(f, **update) for f in frames]


def _revalidate(frame: FrameMessage, **update: Any) -> FrameMessage:
    return FrameMessage.model_validate({**frame.model_dump(), **update})


def exercise_stream(exercise: Exercise, reps: int = 3, *, lean: float = 10.0, stand_s: float = 1.0,
           rep_s: float = 2.0) -> list[FrameMessage]:
    """Frames of ``reps`` reps of a body doing ``exercise``; the edge labels them all ``squat`` (no model knows)."""
    frames: list[FrameMessage] = []
    n_stand, n_rep = round(stand_s * FPS), round(rep_s * FPS)
    phases = [0.0] * n_stand
    for _ in range(reps):
        phases += [math.sin(math.pi * k / n_rep) for k in range(n_rep)] + [0.0] * n_stand
    for i, t in enumerate(phases):  # t: 0 at the top of a rep, 1 at its bottom
        hips = t if exercise in ("squat", "lunge") else 0.0
        elbow = t if exercise == "curl" else 0.0
        press = t if exercise == "pushup" else 0.0
        angles = {
            "hip_depth": -1.0 + 1.1 * hips, "knee": 170 - 100 * hips, "hip": 175 - 100 * hips,
            "hip_l": 175 - (120 if exercise == "lunge" else 100) * hips,
            "hip_r": 175 - (30 if exercise == "lunge" else 100) * hips,
            "elbow_l": 165 - 125 * elbow, "elbow_r": 165 - 5 * elbow, "elbow": 165 - 65 * elbow - 80 * press,
            "shoulder_height": 0.9 - 0.6 * press, "shoulder": 15.0,
            "trunk_lean": lean + 20 * hips,
        }
        frames.append(FrameMessage.model_validate({
            "node": NODE, "boot": BOOT, "seq": i, "ts": TS0 + round(i * 1000 / FPS), "exercise": "squat",
            "phase": "standing", "phase_p": {"standing": 0.7, "descending": 0.1, "bottom": 0.1, "ascending": 0.1},
            "form": "good", "bad_p": 0.05, "angles": {k: round(v, 3) for k, v in angles.items()}, "vis": 0.9,
        }))
    return frames
