"""A recorded pose track played back through the edge gives the frames the edge gives from the video itself.

Evaluation and the suite's ground-truth tests read every clip's frames from ``frame_cache.edge_frames``, which
replays a cached pose track (``formcheck_edge.offline.replay_poses``) instead of running the pose model again.
That is only honest if the two are the same frames, bit for bit: this checks it against ``classify_video`` (the
path ``formcheck analyze`` and a file-fed node run), on a phone clip stored sideways with a rotation flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from formcheck_edge.offline import classify_video, offline_config, replay_poses
from formcheck_models.training.dataset import extract_poses
from formcheck_protocol.messages import FrameMessage

pytestmark = pytest.mark.data

CLIP = "videos/squat/squat_side_bodyweight_c.mp4"  # 141 frames, 3 reps' worth of standing, descent, bottom


def _content(frames: list[FrameMessage]) -> list[dict[str, object]]:
    start = frames[0].ts
    # The boot id is random per run and capture times start at the run's clock: compare the intervals.
    return [{**f.model_dump(exclude={"boot", "ts"}), "since_start": f.ts - start} for f in frames]


def test_a_replayed_pose_track_gives_the_videos_frames(data_dir: Path, pose_model: Path) -> None:
    config = offline_config(data_dir / CLIP, node="eval", exercise="squat")
    from_video = list(classify_video(config))
    replayed = list(replay_poses(config, extract_poses(data_dir / CLIP, pose_model).track()))
    assert len(replayed) == len(from_video) == 141
    assert sum(f.phase != "no_person" for f in from_video) > 100, "the clip shows a person: a real comparison"
    assert _content(replayed) == _content(from_video)
