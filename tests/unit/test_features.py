"""Feature code on synthetic skeletons with known geometry (no model, no video)."""

from __future__ import annotations

import numpy as np
import pytest

from formcheck_edge import features as F


def skeleton(
    knee_deg: float, trunk_deg: float = 0.0, stance: float = 0.3, knee_gap: float = 0.3, shin_deg: float | None = None
) -> F.PoseLandmarks:
    """A skeleton with thigh and shin 0.45 m, knee angle ``knee_deg``, trunk tilted ``trunk_deg`` forward.

    World axes as MediaPipe: x to the subject's left, y down, z forward. The
    shin leans forward by ``shin_deg`` (default grows with knee bend), the
    thigh points back from the knee.
    """
    w = np.zeros((33, 3), dtype=np.float32)
    thigh = shin = 0.45
    s = np.radians(0.35 * (180.0 - knee_deg) if shin_deg is None else shin_deg)
    hip_dir = -s - np.radians(knee_deg)  # angle from +y (down) toward +z
    for side, (hip, knee, ankle, heel, foot, sh) in {
        1: (F.L_HIP, F.L_KNEE, F.L_ANKLE, F.L_HEEL, F.L_FOOT, F.L_SHOULDER),
        -1: (F.R_HIP, F.R_KNEE, F.R_ANKLE, F.R_HEEL, F.R_FOOT, F.R_SHOULDER),
    }.items():
        x_ankle, x_knee = side * stance / 2, side * knee_gap / 2
        w[ankle] = [x_ankle, 0.0, 0.0]
        w[knee] = [x_knee, -shin * np.cos(s), shin * np.sin(s)]
        w[hip] = [side * 0.15, w[knee][1] + thigh * np.cos(hip_dir), w[knee][2] + thigh * np.sin(hip_dir)]
        w[heel] = [x_ankle, 0.05, -0.05]
        w[foot] = [x_ankle, 0.05, 0.15]
        t = np.radians(trunk_deg)
        w[sh] = [side * 0.2, w[hip][1] - 0.5 * np.cos(t), w[hip][2] + 0.5 * np.sin(t)]
    w[F.NOSE] = (w[F.L_SHOULDER] + w[F.R_SHOULDER]) / 2 + [0, -0.25, 0.05]
    for el, sh in ((F.L_ELBOW, F.L_SHOULDER), (F.R_ELBOW, F.R_SHOULDER)):
        w[el] = w[sh] + [0, 0.3, 0]
    for wr, el in ((F.L_WRIST, F.L_ELBOW), (F.R_WRIST, F.R_ELBOW)):
        w[wr] = w[el] + [0, 0.25, 0]
    return F.PoseLandmarks(world=w, visibility=np.ones(33, dtype=np.float32))


def test_knee_angle_is_measured() -> None:
    for knee in (170.0, 120.0, 80.0):
        assert F.body_measures(skeleton(knee))["knee"] == pytest.approx(knee, abs=0.5)


def test_standing_vs_deep_squat() -> None:
    standing = F.body_measures(skeleton(178.0))
    deep = F.body_measures(skeleton(40.0, trunk_deg=40.0, shin_deg=35.0))
    assert standing["hip_depth"] < -0.8
    assert deep["hip_depth"] > 0.0
    assert deep["trunk_lean"] == pytest.approx(40.0, abs=1.0)
    assert standing["trunk_lean"] == pytest.approx(0.0, abs=1.0)


def test_knees_caving_in_lowers_width_ratio() -> None:
    apart = F.body_measures(skeleton(90.0, stance=0.4, knee_gap=0.45))
    caved = F.body_measures(skeleton(90.0, stance=0.4, knee_gap=0.2))
    assert apart["knee_width"] > 1.0 > caved["knee_width"]
    assert caved["knee_valgus"] > apart["knee_valgus"]


def test_upper_arm_and_feet_in_the_picture_are_measured() -> None:
    """Recognition's cues: arms hanging by the trunk (a curl's upper arm), and whether an ankle is seen."""
    pose = skeleton(170.0)
    assert F.body_measures(pose)["shoulder"] < 10.0  # hanging by the trunk
    spread = pose.world.copy()
    for elbow, shoulder, side in ((F.L_ELBOW, F.L_SHOULDER, 1), (F.R_ELBOW, F.R_SHOULDER, -1)):
        spread[elbow] = spread[shoulder] + [side * 0.3, 0.0, 0.0]  # out to the side, as holding a bar on the back
    assert F.body_measures(F.PoseLandmarks(world=spread, visibility=pose.visibility))["shoulder"] == pytest.approx(
        90.0, abs=10.0)
    cropped = np.ones(33, dtype=np.float32)
    cropped[[F.L_ANKLE, F.R_ANKLE]] = [0.04, 0.1]
    assert F.body_measures(F.PoseLandmarks(world=pose.world, visibility=cropped))["ankle_vis"] == pytest.approx(0.1)
    assert F.body_measures(pose)["ankle_vis"] == pytest.approx(1.0)


def test_features_are_scale_and_translation_invariant() -> None:
    base = skeleton(100.0, trunk_deg=20.0)
    moved = F.PoseLandmarks(world=base.world * 1.7 + np.array([0.3, -0.2, 1.0], dtype=np.float32),
                            visibility=base.visibility)
    a, b = F.frame_features(base), F.frame_features(moved)
    np.testing.assert_allclose(a.vector, b.vector, atol=1e-4)


def test_vector_matches_spec_names_and_hash_is_stable() -> None:
    window = F.FeatureWindow()
    vec = window.push(F.frame_features(skeleton(150.0)))
    assert vec.shape == (len(F.feature_names()),)
    assert vec.dtype == np.float32
    assert F.feature_spec_hash() == F.feature_spec_hash()
    assert len(F.feature_spec_hash()) == 16


def test_motion_features_show_direction() -> None:
    window = F.FeatureWindow()
    names = F.feature_names()
    knee_delta = names.index(f"d{F.MOTION_LAGS[0]}_knee")
    for knee in np.linspace(170, 100, 10):
        vec = window.push(F.frame_features(skeleton(float(knee))))
    assert vec[knee_delta] < 0, "descending: knee angle shrinking"
    window.reset()
    for knee in np.linspace(100, 170, 10):
        vec = window.push(F.frame_features(skeleton(float(knee))))
    assert vec[knee_delta] > 0, "ascending: knee angle growing"


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError):
        F.PoseLandmarks(world=np.zeros((17, 3), dtype=np.float32), visibility=np.zeros(17, dtype=np.float32))
