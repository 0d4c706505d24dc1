"""Training-set augmentation on synthetic skeletons: what each camera change does to the features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from formcheck_edge import features as F
from formcheck_models.training.augment import AugmentConfig, augment_poses, augmented_copies, mirror, rotation
from formcheck_models.training.dataset import ClipPoses
from formcheck_models.training.train import FrameSet, fold_training_set
from tests.unit.test_features import skeleton

NO_NOISE = AugmentConfig(mirror_p=0.0, yaw_deg=0.0, pitch_deg=0.0, scale=(1.0, 1.0), jitter_m=0.0, drop_p=0.0)


def track(frames: int = 40) -> ClipPoses:
    """A squat going down and back up, one person in every frame but the first two."""
    knees = 170.0 - 90.0 * np.sin(np.linspace(0, np.pi, frames))
    poses = [skeleton(float(k), trunk_deg=20.0) for k in knees]
    present = np.ones(frames, dtype=bool)
    present[:2] = False
    world = np.stack([p.world for p in poses])
    world[:2] = 0.0
    visibility = np.where(present[:, None], np.full((frames, 33), 0.95, np.float32), 0.0).astype(np.float32)
    return ClipPoses(fps=30.0, world=world, visibility=visibility, present=present)


def measures(world: np.ndarray) -> dict[str, float]:
    return F.body_measures(F.PoseLandmarks(world=world.astype(np.float32), visibility=np.ones(33, np.float32)))


def test_mirror_swaps_sides_and_twice_is_the_identity() -> None:
    pose = skeleton(100.0, trunk_deg=10.0)
    pose.world[F.L_KNEE, 0] += 0.05  # left knee out, right knee in place: an asymmetric pose
    w, vis = mirror(pose.world, pose.visibility)
    before, after = measures(pose.world), measures(w)
    assert after["knee_l"] == pytest.approx(before["knee_r"], abs=1e-3)
    assert after["knee_r"] == pytest.approx(before["knee_l"], abs=1e-3)
    assert after["knee_valgus"] == pytest.approx(before["knee_valgus"], abs=1e-3)
    again, vis2 = mirror(w, vis)
    np.testing.assert_array_equal(again, pose.world)
    np.testing.assert_array_equal(vis2, pose.visibility)


@pytest.mark.parametrize(("yaw", "pitch"), [(30.0, 0.0), (-60.0, 0.0), (0.0, 15.0)])
def test_camera_rotation_keeps_joint_angles(yaw: float, pitch: float) -> None:
    pose = skeleton(110.0, trunk_deg=25.0)
    turned = measures(pose.world @ rotation(yaw, pitch).T)
    for name in ("knee", "hip", "elbow", "knee_l", "knee_r"):
        assert turned[name] == pytest.approx(measures(pose.world)[name], abs=1e-3)


def test_camera_yaw_changes_what_the_view_sees_and_height_changes_vertical() -> None:
    pose = skeleton(110.0, trunk_deg=25.0)
    base = measures(pose.world)
    assert abs(measures(pose.world @ rotation(60.0, 0.0).T)["view_yaw"] - base["view_yaw"]) > 30
    # Height: the trunk lean is measured against the camera's vertical, which tilts with the camera.
    assert abs(measures(pose.world @ rotation(0.0, 15.0).T)["trunk_lean"] - base["trunk_lean"]) > 10


def test_distance_alone_changes_no_feature() -> None:
    poses = track()
    same = augment_poses(poses, np.random.default_rng(0), dataclasses.replace(NO_NOISE, scale=(0.5, 0.5)))
    i = 10
    a = F.frame_features(F.PoseLandmarks(world=poses.world[i], visibility=poses.visibility[i])).vector
    b = F.frame_features(F.PoseLandmarks(world=same.world[i], visibility=same.visibility[i])).vector
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_copies_are_deterministic_differ_from_each_other_and_keep_empty_frames_empty() -> None:
    poses, config = track(), AugmentConfig(copies=2)
    first, again = augmented_copies(poses, 3, config), augmented_copies(poses, 3, config)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x.world, y.world)
        np.testing.assert_array_equal(x.visibility, y.visibility)
    assert not np.allclose(first[0].world, first[1].world)
    assert not np.allclose(augmented_copies(poses, 4, config)[0].world, first[0].world)
    for copy in first:
        assert (copy.world[:2] == 0).all() and (copy.visibility[:2] == 0).all()
        np.testing.assert_array_equal(copy.present, poses.present)


def test_dropped_landmarks_lose_visibility_for_a_run_of_frames() -> None:
    poses = track(200)
    config = dataclasses.replace(NO_NOISE, drop_p=0.02, drop_frames=4)
    copy = augment_poses(poses, np.random.default_rng(1), config)
    dropped = (copy.visibility < poses.visibility) & poses.present[:, None]
    assert 0 < dropped.mean() < 0.2
    moved = np.linalg.norm(copy.world - poses.world, axis=2) > 0
    np.testing.assert_array_equal(moved & poses.present[:, None], dropped)
    # Runs, not isolated frames: a landmark dropped in a frame is mostly dropped in the next one too.
    assert (dropped[1:] & dropped[:-1]).sum() >= 0.5 * dropped.sum()


def test_a_fold_never_trains_on_copies_of_its_held_out_group() -> None:
    def frame_set(clips: list[int], value: float) -> FrameSet:
        n = len(clips)
        return FrameSet(x=np.full((n, 2), value, np.float32), phase=np.zeros(n, np.int64),
                        bad=np.zeros(n, np.int64), clip=np.array(clips, dtype=np.int64))

    groups = ("a", "b", "b")
    frames, augmented = frame_set([0, 1, 2, 2], 0.0), frame_set([0, 0, 1, 2], 1.0)
    held_out_b = fold_training_set(frames, groups, "b", augmented)
    assert sorted(held_out_b.clip.tolist()) == [0, 0, 0]
    assert held_out_b.x[:, 0].tolist().count(1.0) == 2
    held_out_a = fold_training_set(frames, groups, "a", None)
    assert sorted(held_out_a.clip.tolist()) == [1, 2, 2]
