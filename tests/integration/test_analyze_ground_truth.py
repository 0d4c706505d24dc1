"""``formcheck analyze`` against the human ground truth of every clip (squat, push-up, curl).

The table of expected vs counted is printed at the end of the test run.
Note: the committed classifiers were trained on these clips (their held-out
quality is in models/REPORT_<exercise>.md); the rep counter and the grading
rules were not fitted to them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aggregator.analyze import analyze_video
from formcheck.paths import DataMissingError, require_data_dir

BAD_FORMS = {"knees_in", "knee_over_toes", "too_deep", "forward_lean", "too_upright"}


EXERCISES = ("squat", "pushup", "curl")


def clip_rows() -> list[object]:
    try:
        data = require_data_dir()
    except DataMissingError as exc:
        return [pytest.param(str(exc), id="data-missing")]
    with (data / "ground_truth.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["exercise"] in EXERCISES]
    return [pytest.param(r, id=Path(r["path"]).stem) for r in rows]


@pytest.mark.parametrize("row", clip_rows())
def test_analyze_counts_complete_reps_exactly(row: dict[str, str] | str, record_property: object) -> None:
    if isinstance(row, str):
        pytest.fail(row, pytrace=False)
    data = require_data_dir()
    exercise = row["exercise"]
    assert exercise in EXERCISES
    result = analyze_video(data / row["path"], exercise)
    labels = row["form"].split()
    labelled_bad = any(label in BAD_FORMS for label in labels)
    bottoms = [int(b) for b in row["bottom_frames"].split()]
    record_property("analyze_row", {  # type: ignore[operator]
        "clip": Path(row["path"]).stem, "expected": int(row["complete_reps"]), "counted": result.complete_reps,
        "partial_expected": int(row["partial_reps"]), "partial": result.partial_reps,
        "labelled_bad": labelled_bad, "flagged_bad": result.flagged_bad,
        "grades": "".join(r.grade for r in result.reps),
    })
    assert result.complete_reps == int(row["complete_reps"])
    if labelled_bad:
        assert result.flagged_bad, "a clip labelled with a form fault must have at least one rep judged bad"
        bad_reps = [r.rep_index for r in result.reps if r.verdict == "bad"]
        for index, label in enumerate(labels, start=1):
            if label in BAD_FORMS:
                assert index in bad_reps, f"rep {index} is labelled {label} but was judged {result.reps[index - 1]}"
    # Each counted rep's deepest frame lies near its labelled bottom frame. seq is the decode index here (a
    # file read as fast as possible drops nothing); ±10 frames is the README's tolerance for paused reps and
    # moving cameras.
    for rep, bottom in zip(result.reps, bottoms, strict=True):
        assert abs(rep.bottom_seq - bottom) <= 10, f"rep {rep.rep_index}: deepest {rep.bottom_seq}, label {bottom}"
