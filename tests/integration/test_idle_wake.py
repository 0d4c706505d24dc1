"""Nothing lost on waking: a clip preceded by 10 s of an empty scene counts the same reps as the clip alone.

Each clip is played after 10 s of a blank background (the clip's mean colour with sensor noise, built in
memory: nothing is added to the data set) through the real pose model, the idle watch with its shipped
defaults and the classifier (``formcheck_edge.offline.wake_run``), exactly as a live node would take it: frames
published for ``idle.after_s``, then idle (nothing published, one frame in ``idle.check_every`` looked at),
then awake when the person appears. What it published is counted by the station logic of ``formcheck
analyze`` and compared with the same clip's frames without the empty scene (``edge_frames``, the cache the
ground-truth test fills). The clip's frames are stamped as a file-fed node stamps the clip alone
(``file_frame_ts``): the pose landmarker smooths over the intervals between frames, and a 1 ms change in them
moves landmarks enough to flip a borderline rep.

A representative subset here, one or two short clips per exercise (pose on every clip frame costs ~20 ms);
``python -m bench.idle_bench --wake-all`` runs the same check on all 90 clips (docs/performance.md has its
result).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from formcheck_edge.analyze import analyze_frames
from formcheck_edge.config import IdleSection
from formcheck_edge.offline import wake_run
from formcheck_models.training.frame_cache import edge_frames
from formcheck_protocol.messages import Exercise

pytestmark = [pytest.mark.data]

SUBSET = (
    "videos/curl/curl_side_barbell_b.mp4",
    "videos/lunge/lunge_front_dumbbell_c.mp4",
    "videos/pushup/pushup_oblique_floor_b.mp4",
    "videos/squat/squat_oblique_bodyweight_e.mp4",
    "videos/squat/squat_front_goblet_d.mp4",
    # A borderline rep: counted or not depending on 1 ms in the frame intervals (the pose landmarker's smoothing),
    # so it proves the clip's frames are stamped as the clip alone's are.
    "videos/squat/squat_oblique_barbell_e.mp4",
)
WAKE_LIMIT_S = 0.5


def exercise_of(data: Path, path: str) -> Exercise:
    with (data / "ground_truth.csv").open() as f:
        for row in csv.DictReader(f):
            if row["path"] == path:
                return row["exercise"]  # type: ignore[return-value]
    raise AssertionError(f"{path} is not in ground_truth.csv")


@pytest.mark.parametrize("path", SUBSET, ids=[Path(p).stem for p in SUBSET])
def test_a_clip_after_an_empty_scene_loses_no_rep(path: str, data_dir: Path, pose_model: Path) -> None:
    exercise = exercise_of(data_dir, path)
    alone = edge_frames(data_dir / path, exercise)
    run = wake_run(data_dir / path, exercise, prefix_s=10.0)
    idle = IdleSection()
    # Published while nobody was there for idle.after_s, then idle: nothing until the person.
    assert run.went_idle_at is not None and run.woke_at is not None, run
    assert run.went_idle_at <= round(idle.after_s * run.fps) + 1 < run.prefix_frames
    prefix_published = [m for m in run.messages if m.ts < run.ts0]  # the clip's first frame is captured at ts0
    assert len(prefix_published) == run.went_idle_at + 1 and all(m.phase == "no_person" for m in prefix_published)
    assert [m.seq for m in run.messages] == list(range(len(run.messages)))  # no gap for the idle time
    # The first frame message comes within 0.5 s of the first frame the node, never idle, saw the person in.
    visible = run.prefix_frames + next(i for i, f in enumerate(alone) if f.phase != "no_person")
    assert 0 <= run.woke_at - visible <= WAKE_LIMIT_S * run.fps, (run.woke_at, visible)
    # The pose model ran on few of the idle frames (the motion gate). Nothing the empty scene or the idle watch
    # left behind changes a frame of the clip: every message is the clip alone's (so are the reps).
    assert run.pose_runs_idle <= run.looked_idle <= (run.woke_at - run.went_idle_at) / idle.check_every + 1
    assert run.differing_frames(alone) == 0
    counted = analyze_frames(run.messages, path, exercise).complete_reps
    assert counted == analyze_frames(alone, path, exercise).complete_reps
