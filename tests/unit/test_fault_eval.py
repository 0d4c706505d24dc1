"""Per-rep fault evaluation (formcheck_models.training.fault_eval): counted reps matched to labelled reps by bottom."""

from __future__ import annotations

from typing import Any

from formcheck_models.training.fault_eval import evaluate_faults
from formcheck_models.training.rep_selection import EvalClip, HeldOut, Outcome, settings
from tests.unit.synthetic_frames import Segment, squat_clip


def two_reps(first: dict[str, Any], second: dict[str, Any], forms: tuple[str, ...] = ("good", "good")
             ) -> tuple[EvalClip, tuple[int, int]]:
    segments: list[Segment] = [("standing", 1.0)]
    for opts in (first, second):
        segments += [("descending", 0.8, opts), ("bottom", 0.3, opts), ("ascending", 0.8, opts), ("standing", 1.0)]
    clip = squat_clip(segments)
    bottoms = (clip.span("bottom", 0).start + 4, clip.span("bottom", 1).start + 4)
    return EvalClip(name="synthetic", exercise="squat", view="front", source="s", expected=2, partial_expected=0,
                    bottoms=bottoms, frames=tuple(clip.frames), forms=forms), bottoms


def held_out(clip: EvalClip) -> HeldOut:
    return HeldOut(clip=clip, setting=settings()[0], floor=0.12, outcome=Outcome(reps=(), partial=0))


def counts(report: Any, fault: str) -> tuple[int, int, int, int]:
    c = next(c for c in report.counts if c.exercise == "squat" and c.fault == fault)
    return c.true_positive, c.false_positive, c.false_negative, c.reps


def test_a_flagged_labelled_rep_and_a_clean_one() -> None:
    clip, _ = two_reps({"faults": ["knees_in"]}, {}, ("knees_in", "good"))
    report = evaluate_faults([held_out(clip)])
    assert counts(report, "knees_in") == (1, 0, 0, 2)
    assert counts(report, "forward_lean") == (0, 0, 0, 2)


def test_missed_and_false_flags_are_counted() -> None:
    clip, _ = two_reps({}, {"faults": ["knees_in"]}, ("knees_in", "good"))
    report = evaluate_faults([held_out(clip)])
    assert counts(report, "knees_in") == (0, 1, 1, 2)
    c = next(c for c in report.counts if c.fault == "knees_in" and c.exercise == "squat")
    assert c.precision == 0.0 and c.recall == 0.0


def test_unclear_and_unjudged_labels_are_set_apart() -> None:
    clip, _ = two_reps({}, {}, ("unclear", "knee_over_toes"))
    report = evaluate_faults([held_out(clip)])
    assert report.unclear == 1
    assert report.unjudged_labels == {"knee_over_toes": 1}
    assert counts(report, "knees_in") == (0, 0, 0, 1)


def test_a_labelled_rep_no_counted_rep_contains_is_unmatched() -> None:
    clip, bottoms = two_reps({}, {})
    far = EvalClip(**{**clip.__dict__, "bottoms": (bottoms[0], len(clip.frames) + 500)})
    report = evaluate_faults([held_out(far)])
    assert report.unmatched_labelled == 1
    assert counts(report, "knees_in") == (0, 0, 0, 1)
