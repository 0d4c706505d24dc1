"""Grading of repetitions and sets. Every threshold is in :class:`GradingConfig`.

Two ideas from the projects formcheck grew out of, kept and made explicit:

* a **verdict** by posture checks passed (perfect / good / bad), and
* a **letter grade** A–F, which for a set is also capped by the share of
  frames with bad form ("wrong posture" frames).

Per rep the score is 100 points: depth 30, form 30 (share of frames the
form model judged good), fault rules 20 (each counted fault costs
``fault_penalty``), tempo 10 (controlled descent), stability 10 (how much the
depth signal wobbles against the direction of the movement). The checks behind
the verdict depend on the exercise (``POSTURE_CHECKS``): squat knees and torso,
push-up hips, curl torso (no swinging), plus depth, form and tempo for all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from formcheck_aggregator.reps import DEPTH_SIGNAL, DepthSignal, RepFrames, by_exercise, middle
from formcheck_protocol.messages import Exercise, Fault, Grade, RepMessage, Verdict

# What "deep enough" is judged on: squat hip height against the knees; push-up
# and curl the elbow angle (coaching cues are in degrees, and the push-up's
# shoulder height depends on the person's build and the camera).
GRADE_DEPTH: dict[Exercise, DepthSignal] = {
    "squat": DepthSignal("hip_depth", 1.0),
    # The front knee (the more bent one): "front thigh level with the floor" is a right angle there, while the
    # hips-against-knees measure mixes in the back knee, which drops far below the hips.
    "lunge": DepthSignal("knee_l", -1.0, either="knee_r"),
    "pushup": DepthSignal("elbow", -1.0),
    "curl": DepthSignal("elbow_l", -1.0, either="elbow_r"),  # the curling arm
}

# The rep-level range fault: a squat or push-up that is not deep enough is
# "shallow"; a curl that does not bend the elbow far enough is "partial_range".
RANGE_FAULT: dict[Exercise, Fault] = {"squat": "shallow", "lunge": "shallow", "pushup": "shallow",
                                      "curl": "partial_range"}

# Posture checks per exercise: check name -> the counted faults that fail it.
# "depth", "form" and "tempo" apply to every exercise and are computed apart.
POSTURE_CHECKS: dict[Exercise, dict[str, tuple[Fault, ...]]] = {
    "squat": {"knees": ("knees_in",), "torso": ("forward_lean",)},
    "lunge": {"knees": ("knees_in",), "torso": ("forward_lean",)},
    "pushup": {"hips": ("hips_sag", "hips_pike")},
    "curl": {"torso": ("swinging",)},
}

FAULT_WORDS: dict[str, str] = {
    "knees_in": "knees caved in",
    "forward_lean": "chest dropped forward",
    "shallow": "not deep enough",
    "heels_up": "heels came up",
    "knee_over_toes": "knees pushed far over the toes",
    "hips_sag": "hips sagged",
    "hips_pike": "hips piked up",
    "swinging": "leaned back to swing the weight",
    "partial_range": "arm not curled through the full range",
    "poor_form": "form judged poor",
    "fast_descent": "dropped too fast",
}

# What to do about it, in the words a coach would use at the station: the set's message ends with it.
FAULT_CUE: dict[str, str] = {
    "knees_in": "push them out over your toes",
    "forward_lean": "keep your chest up and brace your core",
    "shallow": "sit down until your hips reach knee height",
    "heels_up": "keep your weight on your heels",
    "knee_over_toes": "sit your hips back",
    "hips_sag": "squeeze your glutes to keep a straight line",
    "hips_pike": "lower your hips into a straight line",
    "swinging": "keep your torso still and lower the weight slowly",
    "partial_range": "curl the weight all the way up",
    "poor_form": "slow down and ask a trainer to check your technique",
    "fast_descent": "lower yourself under control",
}
EXERCISE_CUE: dict[tuple[str, str], str] = {
    ("pushup", "shallow"): "lower your chest until your elbows pass 90 degrees",
    ("lunge", "shallow"): "step long and lower until your front thigh is level with the floor",
}


def _by_grade(a: float, b: float, c: float, d: float, f: float) -> Callable[[], dict[Grade, float]]:
    return lambda: {"A": a, "B": b, "C": c, "D": d, "F": f}


class GradingConfig(BaseModel):
    """Thresholds and weights of rep and set grading (defaults from common coaching cues)."""

    model_config = ConfigDict(extra="forbid")

    depth_full: dict[Exercise, float] = Field(
        default_factory=by_exercise(squat=-0.1, lunge=-90.0, pushup=-90.0, curl=-60.0),
        description="Graded depth for full depth points (squat: hip_depth, 0 = hips level with knees; "
        "lunge: minus the front knee's smallest angle; pushup/curl: minus the smallest elbow angle, degrees).",
    )
    depth_zero: dict[Exercise, float] = Field(
        default_factory=by_exercise(squat=-0.6, lunge=-150.0, pushup=-140.0, curl=-120.0),
        description="Graded depth at or above which a rep earns no depth points.",
    )
    shallow: dict[Exercise, float] = Field(
        default_factory=by_exercise(squat=-0.3, lunge=-110.0, pushup=-110.0, curl=-90.0),
        description="A rep whose graded depth stays above this fails the depth check: 'shallow' (squat; lunge: "
        "front knee not bent past 110 degrees; push-up: elbows not bent past 110 degrees) or 'partial_range' "
        "(curl: elbow never closed past a right angle).",
    )
    max_bad_ratio: float = Field(
        0.25, ge=0, le=1, description="Form check fails when more of the rep's frames than this are judged bad."
    )
    poor_form_ratio: float = Field(
        0.5, ge=0, le=1, description="A rep judged bad for at least this share of frames is 'bad' whatever else."
    )
    min_fault_frames: int = Field(3, ge=1, description="Frames a fault rule must flag to count for the rep.")
    fault_penalty: float = Field(10.0, ge=0, description="Points lost per counted fault (of 20).")
    min_descent_s: float = Field(0.6, ge=0, description="Descents at least this long earn all tempo points.")
    fast_descent_s: float = Field(0.25, ge=0, description="Descents this fast or faster earn none (and fail).")
    wobble_tolerance: dict[Exercise, float] = Field(
        default_factory=by_exercise(squat=0.02, lunge=0.02, pushup=0.03, curl=2.0),
        description="Moves of the rep's depth signal against the movement smaller than this are noise "
        "(units of formcheck_aggregator.reps DEPTH_SIGNAL: thigh lengths, torso lengths, degrees).",
    )
    grade_min_score: dict[Grade, float] = Field(
        default_factory=_by_grade(a=90.0, b=80.0, c=70.0, d=60.0, f=0.0),
        description="Lowest score for each letter.",
    )
    grade_max_bad_ratio: dict[Grade, float] = Field(
        default_factory=_by_grade(a=0.10, b=0.20, c=0.30, d=0.40, f=1.0),
        description="Set grade cap: most bad-form frames (share over all reps) each letter allows.",
    )


def _lerp_points(value: float, zero: float, full: float, points: float) -> float:
    if full == zero:
        return points
    return points * min(1.0, max(0.0, (value - zero) / (full - zero)))


def letter(score: float, config: GradingConfig) -> Grade:
    for grade in ("A", "B", "C", "D"):
        if score >= config.grade_min_score[grade]:
            return grade
    return "F"


def _wobble(depth: Sequence[float], bottom: int, tolerance: float) -> float:
    """Share of steps that move against the movement (up while descending, down while ascending)."""
    if len(depth) < 3:
        return 0.0
    against = 0
    for i in range(1, len(depth)):
        step = depth[i] - depth[i - 1]
        going_down = i <= bottom
        if (going_down and step < -tolerance) or (not going_down and step > tolerance):
            against += 1
    return against / (len(depth) - 1)


def grade_rep(
    rep: RepFrames, *, node: str, member: str, set_id: str, rep_index: int, config: GradingConfig
) -> RepMessage:
    """Measure and grade one complete repetition."""
    frames = rep.frames
    exercise = rep.exercise
    signal = DEPTH_SIGNAL[exercise]
    bottom_frame = rep.bottom_frame
    assert rep.bottom is not None
    arrived, left = (frames[i] for i in rep.bottom)
    with_depth = [(i, d) for i, f in enumerate(frames) if (d := signal.of(f)) is not None]
    depth_series = [d for _, d in with_depth]
    # The bottom's place among the frames that have the signal (the wobble's turning point).
    bottom_index = max(0, sum(i <= middle(rep.bottom) for i, _ in with_depth) - 1)
    graded = [d for f in frames if (d := GRADE_DEPTH[exercise].of(f)) is not None]
    deepest = max(graded) if graded else max(depth_series)
    start, end = frames[0], frames[-1]
    # Tempo is the movement's: a pause at the bottom belongs to neither the descent nor the ascent.
    descent_s = (arrived.ts - start.ts) / 1000
    ascent_s = (end.ts - left.ts) / 1000
    bad_ratio = sum(f.form == "bad" for f in frames) / len(frames)

    fault_frames: dict[Fault, list[int]] = {}
    for f in frames:
        for fault in f.faults:
            fault_frames.setdefault(fault, []).append(f.seq)
    faults = {k: v for k, v in fault_frames.items() if len(v) >= config.min_fault_frames}
    shallow = deepest < config.shallow[exercise]
    range_fault = RANGE_FAULT[exercise]
    if shallow:
        faults[range_fault] = [bottom_frame.seq]

    checks = {"depth": not shallow, "form": bad_ratio <= config.max_bad_ratio}
    for check, failing in POSTURE_CHECKS[exercise].items():
        checks[check] = not any(fault in faults for fault in failing)
    checks["tempo"] = descent_s > config.fast_descent_s
    score = (
        _lerp_points(deepest, config.depth_zero[exercise], config.depth_full[exercise], 30.0)
        + 30.0 * (1.0 - bad_ratio)
        + max(0.0, 20.0 - config.fault_penalty * sum(1 for k in faults if k != range_fault))
        + _lerp_points(descent_s, config.fast_descent_s, config.min_descent_s, 10.0)
        + 10.0 * (1.0 - min(1.0, 2 * _wobble(depth_series, bottom_index, config.wobble_tolerance[exercise])))
    )
    score = round(score, 1)  # the letter must match the score people see
    failed = sum(not ok for ok in checks.values())
    verdict: Verdict = "perfect" if failed == 0 else "good" if failed == 1 else "bad"
    if bad_ratio >= config.poor_form_ratio:
        verdict = "bad"
    angles = [f.angles for f in frames]
    knees = [a["knee"] for a in angles if "knee" in a]
    elbows = [a["elbow"] for a in angles if "elbow" in a]
    hip_depths = [a["hip_depth"] for a in angles if "hip_depth" in a]
    rep_message = RepMessage(
        node=node, member=member, exercise=exercise, set_id=set_id, rep_index=rep_index,
        start_ts=start.ts, bottom_ts=bottom_frame.ts, end_ts=end.ts,
        start_seq=start.seq, bottom_seq=bottom_frame.seq, end_seq=end.seq,
        descent_s=round(descent_s, 3), ascent_s=round(ascent_s, 3), depth=round(deepest, 3),
        min_knee=round(min(knees), 1) if knees else None,
        min_elbow=round(min(elbows), 1) if elbows else None,
        hip_below_knee=(max(hip_depths) > 0) if exercise in ("squat", "lunge") and hip_depths else None,
        bad_ratio=round(bad_ratio, 4), faults=faults, checks=checks,
        score=score, grade=letter(score, config), verdict=verdict,
    )
    # What the station screen says after the rep, in the set message's words.
    return rep_message.model_copy(update={"cue": main_fault([rep_message])})


def _rep_ranges(indices: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> 'reps 1–3 and 5'."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    parts = [f"{a}–{b}" if b > a else str(a) for a, b in runs]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return ("rep " if len(indices) == 1 else "reps ") + text


def main_fault(reps: Sequence[RepMessage]) -> str:
    """The fault seen on most reps and what to do about it: 'knees caved in on reps 7–10: push them out over
    your toes'. A fault the rules name wins over the form model's bare 'poor form', which says only *that* form
    was poor, not how."""
    seen: dict[str, list[int]] = {}
    for rep in reps:
        names: list[str] = [*rep.faults]
        if not rep.checks.get("tempo", True):
            names.append("fast_descent")
        if rep.checks.get("form") is False:
            names.append("poor_form")
        for name in names:
            seen.setdefault(name, []).append(rep.rep_index)
    if not seen:
        return ""
    named = {k: len(v) for k, v in seen.items() if k != "poor_form"}
    counts = Counter(named or {"poor_form": len(seen["poor_form"])})
    name, _ = counts.most_common(1)[0]
    exercise = reps[0].exercise
    cue = EXERCISE_CUE.get((exercise, name)) or FAULT_CUE.get(name)
    flagged = {i for indices in seen.values() for i in indices}
    clean = [rep.rep_index for rep in reps if rep.rep_index not in flagged]
    if name == "poor_form" and clean:
        # The model says only that form was poor; the member's own clean reps are the example to follow.
        cue = f"move as you did on {_rep_ranges(clean)}, which looked right, and ask a trainer to check your technique"
    words = f"{FAULT_WORDS.get(name, name.replace('_', ' '))} on {_rep_ranges(seen[name])}"
    return f"{words}: {cue}" if cue else words


def set_grade(score_mean: float, bad_ratio: float, config: GradingConfig) -> Grade:
    """Worse of the mean-score letter and the bad-frame-share letter."""
    by_score = letter(score_mean, config)
    by_frames: Grade = "F"
    for grade in ("A", "B", "C", "D"):
        if bad_ratio <= config.grade_max_bad_ratio[grade]:
            by_frames = grade
            break
    order = "ABCDF"
    return by_score if order.index(by_score) >= order.index(by_frames) else by_frames
