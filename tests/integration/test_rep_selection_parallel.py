"""The leave-one-source-out grid counted on every core gives what one process gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from formcheck_models.training import rep_selection as selection

pytestmark = [pytest.mark.data]


def test_the_grid_on_worker_processes_equals_the_grid_in_process(data_dir: Path) -> None:
    # One clip per exercise and a paused rep: enough to tell a wrong clip order or a lost setting.
    names = {"squat_side_bodyweight_c", "pushup_side_floor_a", "curl_side_barbell_a", "lunge_side_band_a"}
    clips = [c for c in selection.load_eval_clips(data_dir) if c.name in names]
    assert len(clips) == len(names)
    in_process = selection.Table.build(clips)
    on_workers = selection.Table.build(clips, data_dir=data_dir)
    assert on_workers.outcomes == in_process.outcomes
    assert sum(o.count for outcomes in in_process.outcomes.values() for o in outcomes) > 0
