"""What `formcheck analyze` must keep getting right on the data set, and the floors its totals may not fall below.

Two guards, both measured with the code and models as committed, never by fitting the clips they judge:

* ``REGRESSION_CLIPS``: clean clips that every version must keep counting exactly, with each rep's bottom
  near its label and every labelled fault judged bad. They are the clips of ``confidence = high`` in
  ground_truth.csv that passed all three checks on the day this list was made (mediapipe 0.10.18 runtime,
  classifiers 1.3.0): 44 of 83. Most are in the classifiers' training set (35 of the 44), so this is a
  regression guard, not a measure of accuracy.
* ``FLOORS``: per exercise, how many clips the classifiers never trained on (``TRAINING_CLIPS``) are counted
  exactly. This is the honest figure (other people, cameras and gyms); it may only move up. The first
  figures are the ones reached that day (squat 13 of 25, push-up 3 of 10, curl 0 of 8; before the
  runtime change, with classifiers 1.2.0 on mediapipe 1.2.3: 12, 3 and 0); the leave-one-source-out
  evaluation is to replace them.

Both are checked by tests/conftest.py once every clip of ground_truth.csv has been analysed in the run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

REGRESSION_CLIPS: Final[frozenset[str]] = frozenset({
    "curl_side_barbell_a", "pushup_front_11", "pushup_front_12", "pushup_front_13", "pushup_front_14",
    "pushup_front_20", "pushup_oblique_23", "pushup_oblique_26", "pushup_oblique_27", "pushup_side_01",
    "pushup_side_02", "pushup_side_03", "pushup_side_04", "pushup_side_05", "pushup_side_06", "pushup_side_07",
    "pushup_side_08", "pushup_side_09", "pushup_side_15", "pushup_side_16", "pushup_side_19", "pushup_side_21",
    "pushup_side_22", "pushup_side_24", "pushup_side_floor_d", "squat_front+rear_bodyweight_d",
    "squat_front_bodyweight_a", "squat_front_bodyweight_d", "squat_oblique_barbell_a", "squat_oblique_barbell_b",
    "squat_oblique_barbell_d", "squat_oblique_bodyweight_e", "squat_rear_barbell_a", "squat_rear_barbell_b",
    "squat_rear_barbell_c", "squat_side_barbell_a", "squat_side_belt_d", "squat_side_bodyweight_a",
    "squat_side_bodyweight_b", "squat_side_bodyweight_c", "squat_side_bodyweight_e", "squat_side_bodyweight_f",
    "squat_side_bodyweight_too_deep", "squat_side_landmine_d",
})

FLOORS: Final[dict[str, int]] = {"squat": 13, "pushup": 3, "curl": 0}
"""Exercise → minimum number of held-out clips (not in TRAINING_CLIPS) whose complete reps are counted exactly."""

BOTTOM_TOLERANCE_FRAMES: Final = 10
"""The data README's tolerance for paused reps and moving cameras (±5 for the others)."""


def floor_verdicts(rows: Sequence[Mapping[str, Any]], floors: Mapping[str, int],
                   expected_clips: Collection[str]) -> tuple[list[str], bool]:
    """One line per exercise and whether any held-out total fell below its floor.

    ``rows`` are the analyze test's records; floors are judged only when every clip of ``expected_clips``
    was analysed (a run of a subset, ``-k`` or ``-m``, says so and passes).
    """
    missing = set(expected_clips) - {r["clip"] for r in rows}
    if missing:
        return [f"floors not checked: {len(missing)} clip(s) of ground_truth.csv were not analysed"], False
    lines: list[str] = []
    failed = False
    for exercise, floor in sorted(floors.items()):
        held_out = [r for r in rows if r["exercise"] == exercise and r["held_out"]]
        exact = sum(r["expected"] == r["counted"] for r in held_out)
        below = exact < floor
        failed |= below
        lines.append(f"{exercise}: {exact}/{len(held_out)} held-out clips exact, floor {floor}: "
                     f"{'BELOW FLOOR' if below else 'ok'}")
    return lines, failed
