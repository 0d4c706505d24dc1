"""Rep and set grading: score parts, checks and verdicts, letters, the set's main fault."""

from __future__ import annotations

from typing import Any

import pytest

from formcheck_aggregator.grading import GradingConfig, grade_rep, letter, main_fault, set_grade
from formcheck_aggregator.reps import DEPTH_SIGNAL, RepConfig, RepDetector, RepFrames, locate_bottom
from formcheck_protocol.messages import Fault, RepMessage
from tests.unit.synthetic_frames import Clip, mark, rep_segments, restamp, squat_clip

CFG = GradingConfig()


def rep_clip(*, down: float = 0.8, hold: float = 0.4, up: float = 0.8, **clip_kwargs: Any) -> Clip:
    return squat_clip([("standing", 0.5), ("descending", down), ("bottom", hold), ("ascending", up),
                       ("standing", 0.5)], **clip_kwargs)


def rep_frames(clip: Clip) -> RepFrames:
    """The movement exactly: first descending frame to last ascending frame, its bottom located as the detector does."""
    frames = clip.frames[clip.span("descending").start:clip.span("ascending").end]
    return RepFrames("squat", frames, bottom=locate_bottom(frames, DEPTH_SIGNAL["squat"], RepConfig().bottom_plateau))


def grade(rep: RepFrames, config: GradingConfig = CFG) -> RepMessage:
    return grade_rep(rep, node="pi-squat-1", member="m42", set_id="pi-squat-1-0123456789abcdef-31", rep_index=1,
                     config=config)


# -- one rep -----------------------------------------------------------------------


def test_perfect_clean_rep_from_the_detector() -> None:
    clip = squat_clip(rep_segments(1))
    detector = RepDetector("squat")
    events = [e for f in clip.frames for e in detector.push(f)]
    assert [e.kind for e in events] == ["complete"]
    msg = grade(events[0].rep)
    assert msg.verdict == "perfect"
    assert msg.grade == "A"
    assert msg.score >= 90
    assert all(msg.checks.values()), msg.checks
    assert msg.faults == {}
    assert msg.bad_ratio == 0
    assert msg.hip_below_knee is True
    assert msg.depth == pytest.approx(0.1, abs=1e-3)
    assert msg.min_knee == pytest.approx(70.0, abs=0.5)
    assert msg.start_ts < msg.bottom_ts < msg.end_ts
    rep_seqs = [f.seq for f in events[0].rep.frames]
    assert (msg.start_seq, msg.end_seq) == (rep_seqs[0], rep_seqs[-1])
    assert msg.bottom_ts == clip.frames[clip.index_of_seq(msg.bottom_seq)].ts
    # The bottom is the middle of the 0.3 s hold (the data set's convention for a paused rep); the hold itself is
    # neither descent nor ascent.
    hold_s = (msg.bottom_ts - msg.start_ts) / 1000 - msg.descent_s
    assert 0.1 < hold_s < 0.25
    assert (msg.end_ts - msg.bottom_ts) / 1000 - msg.ascent_s == pytest.approx(hold_s, abs=0.07)
    assert 0.6 < msg.descent_s < 0.9
    assert (msg.node, msg.member, msg.rep_index, msg.exercise) == ("pi-squat-1", "m42", 1, "squat")


def test_perfect_rep_scores_every_part() -> None:
    msg = grade(rep_frames(rep_clip()))
    assert msg.score == pytest.approx(100.0)


def test_shallow_rep_fails_depth() -> None:
    clip = rep_clip(bottom=-0.4)  # deepest hip_depth below the 'shallow' threshold of -0.3
    assert max(f.angles["hip_depth"] for f in clip.frames) < CFG.shallow["squat"]
    msg = grade(rep_frames(clip))
    assert "shallow" in msg.faults
    assert msg.checks["depth"] is False
    assert msg.verdict == "good"  # one check failed
    assert msg.hip_below_knee is False
    # depth points: linear from depth_zero (-0.6, none) to depth_full (-0.1, all 30)
    assert msg.score == pytest.approx(100 - 30 + 30 * (-0.4 + 0.6) / 0.5, abs=0.1)
    # the 'shallow' fault's frame is the deepest one
    bottom_seq = msg.faults["shallow"][0]
    assert clip.frames[clip.index_of_seq(bottom_seq)].ts == msg.bottom_ts


def test_not_shallow_just_below_the_threshold() -> None:
    msg = grade(rep_frames(rep_clip(bottom=-0.25)))
    assert "shallow" not in msg.faults
    assert msg.checks["depth"] is True


@pytest.mark.parametrize("max_bad_ratio", [0.25, 0.9])
def test_poor_form_ratio_makes_the_verdict_bad_whatever_else(max_bad_ratio: float) -> None:
    clip = rep_clip(down=0.8, hold=0.4, up=0.8)  # 24 + 12 + 24 = 60 rep frames
    rep = rep_frames(clip)
    assert len(rep.frames) == 60
    config = GradingConfig(max_bad_ratio=max_bad_ratio)
    first = clip.span("descending").start
    mark(clip.frames, range(first, first + 30), form="bad")  # exactly poor_form_ratio (0.5)
    msg = grade(rep_frames(clip), config)
    assert msg.bad_ratio == pytest.approx(config.poor_form_ratio)
    assert msg.checks["depth"] and msg.checks["knees"] and msg.checks["torso"] and msg.checks["tempo"]
    assert msg.checks["form"] is (max_bad_ratio >= 0.5)
    assert msg.verdict == "bad"
    # one frame fewer is not 'poor form' any more
    clip = rep_clip(down=0.8, hold=0.4, up=0.8)
    mark(clip.frames, range(first, first + 29), form="bad")
    msg = grade(rep_frames(clip), config)
    assert msg.verdict == ("good" if max_bad_ratio < 29 / 60 else "perfect")


def test_bad_frames_cost_form_points() -> None:
    clip = rep_clip()
    first = clip.span("descending").start
    rep_len = len(rep_frames(clip).frames)
    mark(clip.frames, range(first, first + 6), form="bad")
    msg = grade(rep_frames(clip))
    assert msg.bad_ratio == pytest.approx(6 / rep_len, abs=1e-4)
    assert msg.score == pytest.approx(100 - 30 * 6 / rep_len, abs=0.1)
    assert msg.checks["form"] is True  # 10 % < max_bad_ratio


@pytest.mark.parametrize(("fault", "check"), [("knees_in", "knees"), ("forward_lean", "torso")])
def test_fault_below_min_fault_frames_does_not_count(fault: Fault, check: str) -> None:
    clip = rep_clip()
    bottom = clip.span("bottom").start
    mark(clip.frames, range(bottom, bottom + CFG.min_fault_frames - 1), faults=[fault])
    msg = grade(rep_frames(clip))
    assert msg.faults == {}
    assert msg.checks[check] is True
    assert msg.score == pytest.approx(100.0)
    assert msg.verdict == "perfect"


@pytest.mark.parametrize(("fault", "check"), [("knees_in", "knees"), ("forward_lean", "torso")])
def test_fault_in_min_fault_frames_counts_and_costs_the_penalty(fault: Fault, check: str) -> None:
    clip = rep_clip()
    bottom = clip.span("bottom").start
    flagged = range(bottom, bottom + CFG.min_fault_frames)
    mark(clip.frames, flagged, faults=[fault])
    msg = grade(rep_frames(clip))
    assert msg.faults == {fault: [clip.frames[i].seq for i in flagged]}
    assert msg.checks[check] is False
    assert msg.score == pytest.approx(100.0 - CFG.fault_penalty)
    assert msg.verdict == "good"


def test_fault_penalty_is_configurable_and_points_do_not_go_negative() -> None:
    clip = rep_clip()
    bottom = clip.span("bottom").start
    mark(clip.frames, range(bottom, bottom + 5), faults=["knees_in", "forward_lean", "heels_up"])
    msg = grade(rep_frames(clip), GradingConfig(fault_penalty=6.0))
    assert set(msg.faults) == {"knees_in", "forward_lean", "heels_up"}
    assert msg.score == pytest.approx(100 - 3 * 6.0)
    assert msg.verdict == "bad"  # knees and torso both failed
    msg = grade(rep_frames(clip), GradingConfig(fault_penalty=15.0))
    assert msg.score == pytest.approx(80.0)  # fault points floor at 0 of 20


def test_fast_descent_fails_tempo() -> None:
    clip = rep_clip(down=0.2)
    msg = grade(rep_frames(clip))
    assert msg.descent_s <= CFG.fast_descent_s
    assert msg.checks["tempo"] is False
    assert msg.verdict == "good"
    assert msg.score == pytest.approx(90.0)  # no tempo points


def test_moderate_descent_earns_part_of_the_tempo_points() -> None:
    msg = grade(rep_frames(rep_clip(down=0.4)))
    assert msg.checks["tempo"] is True
    expected = 10 * (msg.descent_s - CFG.fast_descent_s) / (CFG.min_descent_s - CFG.fast_descent_s)
    assert msg.score == pytest.approx(90.0 + expected, abs=0.1)


def test_wobble_against_the_movement_costs_stability_points() -> None:
    clip = rep_clip()
    desc = clip.span("descending")
    for i in range(desc.start + 2, desc.last, 4):  # every 4th frame of the descent bounces back up
        f = clip.frames[i]
        clip.frames[i] = restamp([f], angles={**f.angles, "hip_depth": f.angles["hip_depth"] - 0.1})[0]
    msg = grade(rep_frames(clip))
    assert msg.score < 100.0
    assert msg.checks["depth"]  # stability is a score part, not a check
    # noise smaller than wobble_tolerance is ignored
    clip = rep_clip()
    for i in range(desc.start + 2, desc.last, 4):
        f = clip.frames[i]
        clip.frames[i] = restamp([f], angles={**f.angles, "hip_depth": f.angles["hip_depth"] - 0.01})[0]
    assert grade(rep_frames(clip)).score == pytest.approx(100.0)


def test_rep_grade_matches_reported_score() -> None:
    """A published rep must not say 'score 90.0, grade B'."""
    # depth points 30 * (-0.267 + 0.6) / 0.5 = 19.98: the score is 89.98 before rounding
    msg = grade(rep_frames(rep_clip(bottom=-0.267)))
    assert msg.score == pytest.approx(90.0)
    assert msg.grade == letter(msg.score, CFG), (msg.score, msg.grade)


# -- letters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [(100, "A"), (90, "A"), (89.99, "B"), (80, "B"), (79.99, "C"), (70, "C"), (69.99, "D"), (60, "D"),
     (59.99, "F"), (0, "F")],
)
def test_letter_boundaries(score: float, expected: str) -> None:
    assert letter(score, CFG) == expected


@pytest.mark.parametrize(
    ("score_mean", "bad_ratio", "expected"),
    [
        (95, 0.0, "A"),
        (95, 0.10, "A"),   # cap boundary is inclusive
        (95, 0.11, "B"),   # the frame cap is worse
        (95, 0.25, "C"),
        (95, 0.41, "F"),
        (65, 0.0, "D"),    # the score letter is worse
        (65, 0.15, "D"),
        (85, 0.35, "D"),
        (50, 0.05, "F"),
    ],
)
def test_set_grade_is_the_worse_of_score_and_bad_frame_cap(score_mean: float, bad_ratio: float,
                                                           expected: str) -> None:
    assert set_grade(score_mean, bad_ratio, CFG) == expected


# -- main fault ---------------------------------------------------------------------


_BASE_REP: RepMessage | None = None


def rep_msg(index: int, faults: dict[Fault, list[int]] | None = None, **checks: bool) -> RepMessage:
    """A graded clean rep with the given index, faults and check results put in."""
    global _BASE_REP  # noqa: PLW0603  (graded once, copied per test)
    if _BASE_REP is None:
        _BASE_REP = grade(rep_frames(rep_clip()))
    all_checks = {"depth": True, "form": True, "knees": True, "torso": True, "tempo": True, **checks}
    return _BASE_REP.model_copy(update={"rep_index": index, "faults": faults or {}, "checks": all_checks})


KNEES = ": push them out over your toes"
CHEST = ": keep your chest up and brace your core"
HEELS = ": keep your weight on your heels"
POOR = ": slow down and ask a trainer to check your technique"
SLOW = ": lower yourself under control"
DEEPER = ": sit down until your hips reach knee height"


def reps_with(fault: Fault, on: set[int], total: int) -> list[RepMessage]:
    return [rep_msg(i, {fault: [i * 100, i * 100 + 1, i * 100 + 2]} if i in on else None) for i in
            range(1, total + 1)]


def test_main_fault_range_of_reps() -> None:
    assert main_fault(reps_with("knees_in", {2, 3, 4}, 5)) == "knees caved in on reps 2–4" + KNEES


def test_main_fault_single_rep() -> None:
    assert main_fault(reps_with("forward_lean", {1}, 3)) == "chest dropped forward on rep 1" + CHEST


def test_main_fault_range_and_single() -> None:
    assert main_fault(reps_with("knees_in", {1, 2, 3, 5}, 6)) == "knees caved in on reps 1–3 and 5" + KNEES


def test_main_fault_separate_reps() -> None:
    assert main_fault(reps_with("heels_up", {1, 3, 5}, 5)) == "heels came up on reps 1, 3 and 5" + HEELS


def test_main_fault_two_separate_ranges() -> None:
    assert main_fault(reps_with("knees_in", {1, 2, 4, 5}, 5)) == "knees caved in on reps 1–2 and 4–5" + KNEES


def test_main_fault_is_empty_without_faults() -> None:
    assert main_fault([rep_msg(i) for i in range(1, 4)]) == ""
    assert main_fault([]) == ""


def test_main_fault_is_the_most_frequent() -> None:
    reps = [rep_msg(1, {"knees_in": [1, 2, 3]}), rep_msg(2, {"forward_lean": [4, 5, 6]}),
            rep_msg(3, {"forward_lean": [7, 8, 9], "knees_in": [7, 8, 9]}), rep_msg(4, {"forward_lean": [10, 11, 12]})]
    assert main_fault(reps) == "chest dropped forward on reps 2–4" + CHEST


def test_main_fault_names_poor_form_tempo_and_shallow() -> None:
    assert main_fault([rep_msg(1, form=False), rep_msg(2, form=False)]) == "form judged poor on reps 1–2" + POOR
    assert main_fault([rep_msg(1, tempo=False), rep_msg(2, tempo=False)]) == "dropped too fast on reps 1–2" + SLOW
    assert main_fault([rep_msg(1, {"shallow": [5]}, depth=False)]) == "not deep enough on rep 1" + DEEPER


def test_main_fault_from_graded_reps() -> None:
    clip = rep_clip()
    bottom = clip.span("bottom").start
    mark(clip.frames, range(bottom, bottom + 4), faults=["knees_in"])
    faulty = grade(rep_frames(clip)).model_copy(update={"rep_index": 2})
    clean = grade(rep_frames(rep_clip()))
    assert main_fault([clean, faulty, clean.model_copy(update={"rep_index": 3})]) == "knees caved in on rep 2" + KNEES


def test_poor_form_points_to_the_members_own_clean_reps() -> None:
    # the model says only that reps 1-3 were poor: the reps it judged clean are the example to follow
    reps = [rep_msg(1, form=False), rep_msg(2, form=False), rep_msg(3, form=False), rep_msg(4), rep_msg(5),
            rep_msg(6)]
    assert main_fault(reps) == ("form judged poor on reps 1–3: move as you did on reps 4–6, which looked right, "
                                "and ask a trainer to check your technique")
    reps = [rep_msg(1, form=False), rep_msg(2), rep_msg(3, form=False), rep_msg(4)]
    assert main_fault(reps) == ("form judged poor on reps 1 and 3: move as you did on reps 2 and 4, which looked "
                                "right, and ask a trainer to check your technique")
    assert main_fault([rep_msg(1, form=False)]) == "form judged poor on rep 1" + POOR  # no example to point to


def test_a_named_fault_wins_over_the_form_models_poor_form() -> None:
    # the model judged reps 1-3 poor, the rules saw knees caving in on rep 2 only: the member is told what to fix
    reps = [rep_msg(1, form=False), rep_msg(2, {"knees_in": [1, 2, 3]}, form=False), rep_msg(3, form=False)]
    assert main_fault(reps) == "knees caved in on rep 2" + KNEES


def test_a_shallow_push_up_gets_the_push_up_cue() -> None:
    rep = rep_msg(1, {"shallow": [5]}, depth=False).model_copy(update={"exercise": "pushup"})
    assert main_fault([rep]) == "not deep enough on rep 1: lower your chest until your elbows pass 90 degrees"
