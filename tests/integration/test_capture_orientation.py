"""Phone clips stored as landscape frames plus a rotation flag are decoded upright, by the edge and by training."""

from __future__ import annotations

from pathlib import Path

import pytest

from formcheck_edge.capture import OpenCvSource
from formcheck_edge.config import SourceSection
from formcheck_edge.offline import classify_video, offline_config
from formcheck_models.training.dataset import extract_poses

pytestmark = pytest.mark.data

# 480x848 portrait, stored as 848x480 frames with a 90° rotation flag; stands until ~frame 50, bottom at 100.
ROTATED_CLIP = "videos/squat/squat_side_bodyweight_c.mp4"
STANDING, BOTTOM = 10, 100


def test_edge_source_applies_the_rotation_flag(data_dir: Path) -> None:
    source = OpenCvSource(SourceSection(uri=str(data_dir / ROTATED_CLIP)))
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    height, width = frame.shape[:2]
    assert (width, height) == (480, 848)


def test_hips_drop_below_standing_height_at_the_bottom(data_dir: Path, pose_model: Path) -> None:
    # Sideways frames made hip depth (a vertical measure) read ~0 standing and ~-0.9 at the bottom: inverted.
    frames = list(classify_video(offline_config(data_dir / ROTATED_CLIP)))
    standing, bottom = frames[STANDING].angles["hip_depth"], frames[BOTTOM].angles["hip_depth"]
    assert standing < -0.6, "standing hips are most of a thigh length above the knees"
    assert bottom > standing + 0.4


def test_training_decodes_the_same_frames_upright(data_dir: Path, pose_model: Path) -> None:
    poses = extract_poses(data_dir / ROTATED_CLIP, pose_model)
    # y points down in MediaPipe's world coordinates: the pelvis (hips 23/24) is below the shoulders (11/12).
    world = poses.world[STANDING]
    assert (world[23, 1] + world[24, 1]) / 2 > (world[11, 1] + world[12, 1]) / 2 + 0.3
