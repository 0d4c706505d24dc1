"""The floor check of the analyze-vs-ground-truth run (tests/analyze_floors.py) fails the run when a total drops."""

from __future__ import annotations

from tests.analyze_floors import floor_verdicts


def test_totals_at_or_above_their_floors_pass() -> None:
    lines, failed = floor_verdicts({"squat": (3, 4), "pushup": (2, 2)}, (9, 10), {"squat": 3, "pushup": 1}, 9)
    assert not failed
    assert lines == [
        "pushup: 2/2 clips exact (leave-one-source-out), floor 1: ok",
        "squat: 3/4 clips exact (leave-one-source-out), floor 3: ok",
        "bottoms within ±5 frames: 9/10, floor 9: ok",
    ]


def test_one_exercise_below_its_floor_fails_the_run() -> None:
    lines, failed = floor_verdicts({"squat": (2, 4)}, (9, 10), {"squat": 3}, 9)
    assert failed
    assert lines[0] == "squat: 2/4 clips exact (leave-one-source-out), floor 3: BELOW FLOOR"


def test_fewer_bottoms_in_tolerance_fail_the_run() -> None:
    lines, failed = floor_verdicts({"squat": (3, 4)}, (8, 10), {"squat": 3}, 9)
    assert failed
    assert lines[-1] == "bottoms within ±5 frames: 8/10, floor 9: BELOW FLOOR"


def test_an_exercise_missing_from_the_results_counts_zero() -> None:
    _, failed = floor_verdicts({}, (0, 0), {"lunge": 1}, 0)
    assert failed
