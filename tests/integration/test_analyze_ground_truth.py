"""``formcheck analyze`` over every clip of ground_truth.csv, and the leave-one-source-out evaluation behind it.

Every clip must analyse without error, through the edge's own per-frame path (cached by
``formcheck_models.training.frame_cache``, so the leave-one-source-out evaluation that tests/conftest.py runs once every
clip is done reuses these frames) and the station logic of ``formcheck analyze``. The clean clips of
``REGRESSION_CLIPS`` must be counted exactly, with each rep's bottom near its label and every labelled fault
judged bad, and their exercise recognised from the pose (as ``analyze`` without ``--exercise`` does).
tests/conftest.py prints the table and fails the run when a leave-one-source-out total falls below its floor
(tests/analyze_floors.py says how both guards were set).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from formcheck_aggregator.recognition import recognise
from formcheck_edge.analyze import analyze_frames
from formcheck_models.training.frame_cache import edge_frames
from formcheck_runtime.paths import DataMissingError, require_data_dir
from tests.analyze_floors import BOTTOM_TOLERANCE_FRAMES, REGRESSION_CLIPS

pytestmark = [pytest.mark.data, pytest.mark.slow]

BAD_FORMS = {"knees_in", "knee_over_toes", "too_deep", "forward_lean", "too_upright"}


def clip_rows() -> list[object]:
    try:
        data = require_data_dir()
    except DataMissingError as exc:
        return [pytest.param(str(exc), id="data-missing")]
    with (data / "ground_truth.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [pytest.param(r, id=Path(r["path"]).stem) for r in rows]


@pytest.mark.parametrize("row", clip_rows())
def test_analyze_against_ground_truth(row: dict[str, str] | str, record_property: object) -> None:
    if isinstance(row, str):
        pytest.fail(row, pytrace=False)
    data = require_data_dir()
    exercise = row["exercise"]
    clip = Path(row["path"]).stem
    frames = edge_frames(data / row["path"], exercise)  # type: ignore[arg-type]
    result = analyze_frames(frames, row["path"], exercise)  # type: ignore[arg-type]
    recognition = recognise(frames)
    labels = row["form"].split()
    labelled_bad = any(label in BAD_FORMS for label in labels)
    bottoms = [int(b) for b in row["bottom_frames"].split()]
    expected = int(row["complete_reps"])
    bottom_errors = ([rep.bottom_seq - bottom for rep, bottom in zip(result.reps, bottoms, strict=True)]
                     if result.complete_reps == expected else [])
    record_property("analyze_row", {  # type: ignore[operator]
        "clip": clip, "exercise": exercise, "regression": clip in REGRESSION_CLIPS,
        "expected": expected, "counted": result.complete_reps,
        "partial_expected": int(row["partial_reps"]), "partial": result.partial_reps,
        "bottom_errors": bottom_errors,
        "labelled_bad": labelled_bad, "flagged_bad": result.flagged_bad,
        "grades": "".join(r.grade for r in result.reps),
        "recognised": recognition.exercise if recognition else "-",
    })
    if clip not in REGRESSION_CLIPS:
        return
    assert result.complete_reps == expected
    assert recognition is not None and recognition.exercise == exercise, recognition
    if labelled_bad:
        bad_reps = [r.rep_index for r in result.reps if r.verdict == "bad"]
        for index, label in enumerate(labels, start=1):
            if label in BAD_FORMS:
                assert index in bad_reps, f"rep {index} is labelled {label} but was judged {result.reps[index - 1]}"
    # seq is the decode index here: a file read as fast as possible drops nothing.
    for rep_index, error in enumerate(bottom_errors, start=1):
        assert abs(error) <= BOTTOM_TOLERANCE_FRAMES, f"rep {rep_index}: bottom frame {error:+d} from its label"
