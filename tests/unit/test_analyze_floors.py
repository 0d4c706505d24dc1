"""The floor check of the analyze-vs-ground-truth run (tests/analyze_floors.py) fails the run when a total drops."""

from __future__ import annotations

from tests.analyze_floors import floor_verdicts


def row(clip: str, exercise: str, held_out: bool, exact: bool) -> dict[str, object]:
    return {"clip": clip, "exercise": exercise, "held_out": held_out, "expected": 2, "counted": 2 if exact else 1}


ROWS = [row("a", "squat", True, True), row("b", "squat", True, False), row("c", "squat", False, True),
        row("d", "pushup", True, True)]


def test_totals_at_or_above_their_floors_pass() -> None:
    lines, failed = floor_verdicts(ROWS, {"squat": 1, "pushup": 1}, {"a", "b", "c", "d"})
    assert not failed
    assert lines == ["pushup: 1/1 held-out clips exact, floor 1: ok", "squat: 1/2 held-out clips exact, floor 1: ok"]


def test_in_training_clips_do_not_count_toward_a_floor() -> None:
    lines, failed = floor_verdicts(ROWS, {"squat": 2}, {"a", "b", "c", "d"})
    assert failed
    assert lines == ["squat: 1/2 held-out clips exact, floor 2: BELOW FLOOR"]


def test_a_partial_run_is_not_judged() -> None:
    lines, failed = floor_verdicts(ROWS[:2], {"squat": 5}, {"a", "b", "c", "d"})
    assert not failed
    assert lines == ["floors not checked: 2 clip(s) of ground_truth.csv were not analysed"]
