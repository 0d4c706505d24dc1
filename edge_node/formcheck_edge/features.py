"""Pose landmarks → body-frame features, shared verbatim by the edge node and training.

Everything the classifier sees is computed here, so training and inference
cannot drift apart. Inputs are MediaPipe's 33 world landmarks (metres, origin
between the hips, camera-aligned axes, y pointing down) plus per-landmark
visibility. Outputs are scale- and position-invariant: coordinates are
expressed relative to the pelvis and divided by the torso length.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Bump when the meaning of any feature changes: models trained on an older
# spec are then refused at load time instead of silently mis-classifying.
FEATURE_SPEC_VERSION: Final = 2

NUM_LANDMARKS: Final = 33
NOSE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 0, 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32

# Joints whose normalised positions enter the feature vector (face and hand
# detail carry no exercise information and are the noisiest landmarks).
BODY_JOINTS: Final[tuple[tuple[str, int], ...]] = (
    ("nose", NOSE),
    ("l_shoulder", L_SHOULDER), ("r_shoulder", R_SHOULDER),
    ("l_elbow", L_ELBOW), ("r_elbow", R_ELBOW),
    ("l_wrist", L_WRIST), ("r_wrist", R_WRIST),
    ("l_hip", L_HIP), ("r_hip", R_HIP),
    ("l_knee", L_KNEE), ("r_knee", R_KNEE),
    ("l_ankle", L_ANKLE), ("r_ankle", R_ANKLE),
    ("l_heel", L_HEEL), ("r_heel", R_HEEL),
    ("l_foot", L_FOOT), ("r_foot", R_FOOT),
)

LOWER_BODY: Final = (L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE)

# Scalar body measures, in the order they enter the feature vector. Angles are
# in degrees; the others are ratios. Every one is published in frame messages.
ANGLE_NAMES: Final[tuple[str, ...]] = (
    "knee",          # mean hip-knee-ankle angle, 180 = straight legs
    "knee_l", "knee_r",
    "hip",           # mean shoulder-hip-knee angle, 180 = standing tall
    "hip_l", "hip_r",
    "elbow",         # mean shoulder-elbow-wrist angle
    "elbow_l", "elbow_r",
    "shoulder",      # mean hip-shoulder-elbow angle
    "trunk_lean",    # pelvis→neck against vertical, 0 = upright
    "knee_valgus",   # frontal-plane inward knee deviation, + = knees caving in
    "knee_width",    # knee distance / ankle distance, < 1 when knees cave in
    "hip_depth",     # (pelvis − knee height) / thigh length, > 0 = hips below knees
    "shin_lean",     # knee→ankle against vertical: knees travelling forward
    "heel_lift",     # heel above toe, in foot lengths
    "body_line",     # shoulder-hip-ankle angle, 180 = straight plank
)

# Published with each frame but not classifier inputs (adding them would change the feature spec).
CONTEXT_MEASURES: Final[tuple[str, ...]] = (
    "view_yaw",      # hip line against the camera's x axis: 0 = facing or back to the camera, 90 = side-on
    "shoulder_height",  # neck above the wrists, torso lengths (push-up depth: hands on the floor, shoulders lowest)
    "hip_sag",       # 180 − neck-pelvis-ankle angle, + = hips below the shoulder-ankle line (push-up sag), − = piked
    "ankle_vis",     # visibility of the better-seen ankle: whether the feet are in the picture (else legs are guessed)
)

# Motion features: difference between the current frame and a past one, at
# these lags (frames). Phase depends on direction of motion, which a single
# frame cannot show. Spec v2 (classifier 1.2.0): lags 2, 5, 10, 20 instead of
# 3, 8 (v1); the longest covers about two thirds of a second at 30 fps, so a
# slow descent still shows its direction. Held-out push-up phase macro-F1 went
# 0.786 -> 0.823 (mean of two seeds, models/REPORT_pushup.md).
MOTION_LAGS: Final[tuple[int, ...]] = (2, 5, 10, 20)
MOTION_SOURCES: Final[tuple[str, ...]] = ("knee", "hip", "hip_depth", "elbow", "pelvis_y", "neck_y")

_ANGLE_SCALE: Final = 180.0
_EPS: Final = 1e-6


@dataclass(frozen=True)
class PoseLandmarks:
    """One detected pose: 33 world landmarks (x, y, z metres) and their visibility."""

    world: FloatArray
    visibility: FloatArray

    def __post_init__(self) -> None:
        if self.world.shape != (NUM_LANDMARKS, 3) or self.visibility.shape != (NUM_LANDMARKS,):
            raise ValueError(
                f"expected world (33, 3) and visibility (33,), got {self.world.shape} and {self.visibility.shape}"
            )

    # Computed once per pose: the edge's pose loop asks them to decide whether a person is there, the classify
    # stage's frame_features again for the same pose.
    @cached_property
    def mean_visibility(self) -> float:
        """Mean visibility of all 33 landmarks."""
        return float(np.asarray(self.visibility, dtype=np.float32).mean())

    @cached_property
    def lower_body_visibility(self) -> float:
        """Mean visibility of the hips, knees and ankles: whether the legs are in the picture."""
        return float(np.asarray(self.visibility, dtype=np.float32)[list(LOWER_BODY)].mean())


@dataclass(frozen=True)
class FrameFeatures:
    """Features of one frame: the per-frame vector and the named body measures."""

    vector: FloatArray
    angles: dict[str, float]
    visibility: float
    lower_body_visibility: float
    pelvis_y: float
    neck_y: float


def _angle(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], c: npt.NDArray[np.float64]) -> float:
    """Angle ABC in degrees."""
    ba, bc = a - b, c - b
    denom = float(np.linalg.norm(ba) * np.linalg.norm(bc))
    if denom < 1e-12:
        return 0.0
    cos = float(np.dot(ba, bc)) / denom
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _tilt_from_vertical(vec: FloatArray) -> float:
    """Angle between ``vec`` and the vertical axis, in degrees, 0..90 regardless of sign."""
    norm = float(np.linalg.norm(vec)) + _EPS
    return float(np.degrees(np.arccos(min(1.0, abs(float(vec[1])) / norm))))


def _frontal_valgus(hip: FloatArray, knee: FloatArray, ankle: FloatArray, side: float) -> float:
    """Signed inward deviation of the knee from the hip-ankle line in the camera (x-y) plane.

    ``side`` is +1 for the left leg, −1 for the right: MediaPipe's x grows to
    the subject's left, so a left knee moving medially has a smaller x.
    """
    hx, hy = float(hip[0]), float(hip[1])
    ax, ay = float(ankle[0]), float(ankle[1])
    kx, ky = float(knee[0]), float(knee[1])
    if abs(ay - hy) < _EPS:
        return 0.0
    t = (ky - hy) / (ay - hy)
    line_x = hx + t * (ax - hx)
    thigh = float(np.hypot(kx - hx, ky - hy)) + _EPS
    offset = (line_x - kx) * side
    return float(np.degrees(np.arctan2(offset, thigh)))


def body_measures(pose: PoseLandmarks) -> dict[str, float]:
    """The named scalar measures (``ANGLE_NAMES``) of one pose."""
    w = pose.world.astype(np.float64)
    pelvis = (w[L_HIP] + w[R_HIP]) / 2
    neck = (w[L_SHOULDER] + w[R_SHOULDER]) / 2
    knee_l = _angle(w[L_HIP], w[L_KNEE], w[L_ANKLE])
    knee_r = _angle(w[R_HIP], w[R_KNEE], w[R_ANKLE])
    hip_l = _angle(w[L_SHOULDER], w[L_HIP], w[L_KNEE])
    hip_r = _angle(w[R_SHOULDER], w[R_HIP], w[R_KNEE])
    elbow_l = _angle(w[L_SHOULDER], w[L_ELBOW], w[L_WRIST])
    elbow_r = _angle(w[R_SHOULDER], w[R_ELBOW], w[R_WRIST])
    shoulder = (_angle(w[L_HIP], w[L_SHOULDER], w[L_ELBOW]) + _angle(w[R_HIP], w[R_SHOULDER], w[R_ELBOW])) / 2
    knees = (w[L_KNEE] + w[R_KNEE]) / 2
    ankles = (w[L_ANKLE] + w[R_ANKLE]) / 2
    thigh = (float(np.linalg.norm(w[L_HIP] - w[L_KNEE])) + float(np.linalg.norm(w[R_HIP] - w[R_KNEE]))) / 2
    # Widths in the horizontal plane (x, z) so they do not change with squat depth.
    knee_dist = float(np.hypot(*(w[L_KNEE] - w[R_KNEE])[[0, 2]]))
    ankle_dist = float(np.hypot(*(w[L_ANKLE] - w[R_ANKLE])[[0, 2]]))
    foot_len = (float(np.linalg.norm(w[L_HEEL] - w[L_FOOT])) + float(np.linalg.norm(w[R_HEEL] - w[R_FOOT]))) / 2
    heel_lift = ((w[L_FOOT][1] - w[L_HEEL][1]) + (w[R_FOOT][1] - w[R_HEEL][1])) / 2
    hip_line = w[L_HIP] - w[R_HIP]
    body_line = (_angle(w[L_SHOULDER], w[L_HIP], w[L_ANKLE]) + _angle(w[R_SHOULDER], w[R_HIP], w[R_ANKLE])) / 2
    # Which side of the shoulder-ankle line the hips are on: y points down, so hips with a larger y than
    # the line sag toward the floor in a plank, a smaller y is a pike (independent of the camera's yaw).
    axis = ankles - neck
    along = float(np.dot(pelvis - neck, axis)) / (float(np.dot(axis, axis)) + _EPS)
    sag_side = 1.0 if float((pelvis - (neck + along * axis))[1]) >= 0 else -1.0
    return {
        "knee": (knee_l + knee_r) / 2, "knee_l": knee_l, "knee_r": knee_r,
        "hip": (hip_l + hip_r) / 2, "hip_l": hip_l, "hip_r": hip_r,
        "elbow": (elbow_l + elbow_r) / 2, "elbow_l": elbow_l, "elbow_r": elbow_r,
        "shoulder": shoulder,
        "trunk_lean": _tilt_from_vertical(neck - pelvis),
        "knee_valgus": (
            _frontal_valgus(w[L_HIP], w[L_KNEE], w[L_ANKLE], 1.0)
            + _frontal_valgus(w[R_HIP], w[R_KNEE], w[R_ANKLE], -1.0)
        ) / 2,
        "knee_width": knee_dist / (ankle_dist + _EPS),
        # y points down: a pelvis lower than the knees has the larger y.
        "hip_depth": float(pelvis[1] - knees[1]) / (thigh + _EPS),
        "shin_lean": _tilt_from_vertical(knees - ankles),
        "heel_lift": float(heel_lift) / (foot_len + _EPS),
        "body_line": body_line,
        "view_yaw": float(np.degrees(np.arctan2(abs(hip_line[2]), abs(hip_line[0]) + _EPS))),
        "hip_sag": sag_side * (180.0 - _angle(neck, pelvis, ankles)),
        # y points down. Measured from the hands, which rest on the floor in a push-up and sit close to the
        # shoulders in the picture: from the ankles, the far end of a head-on body, the height was unusable.
        "shoulder_height": float((w[L_WRIST][1] + w[R_WRIST][1]) / 2 - neck[1])
        / (float(np.linalg.norm(neck - pelvis)) + _EPS),
        "ankle_vis": float(max(pose.visibility[L_ANKLE], pose.visibility[R_ANKLE])),
    }


def normalised_joints(pose: PoseLandmarks) -> FloatArray:
    """``BODY_JOINTS`` relative to the pelvis, in torso lengths, flattened (x, y, z per joint)."""
    w = pose.world.astype(np.float32)
    pelvis = (w[L_HIP] + w[R_HIP]) / 2
    neck = (w[L_SHOULDER] + w[R_SHOULDER]) / 2
    torso = float(np.linalg.norm(neck - pelvis)) + _EPS
    idx = [i for _, i in BODY_JOINTS]
    joints: FloatArray = ((w[idx] - pelvis) / torso).reshape(-1).astype(np.float32)
    return joints


def virtual_points(pose: PoseLandmarks) -> dict[str, FloatArray]:
    """Neck, pelvis and mid-spine: points MediaPipe does not detect but the angles need."""
    w = pose.world.astype(np.float32)
    pelvis = (w[L_HIP] + w[R_HIP]) / 2
    neck = (w[L_SHOULDER] + w[R_SHOULDER]) / 2
    return {"pelvis": pelvis, "neck": neck, "spine": (pelvis + neck) / 2}


def frame_features(pose: PoseLandmarks) -> FrameFeatures:
    """Features of a single frame, without motion context."""
    measures = body_measures(pose)
    scalars = np.array(
        [measures[n] / _ANGLE_SCALE if n in _DEGREE_MEASURES else measures[n] for n in ANGLE_NAMES],
        dtype=np.float32,
    )
    points = virtual_points(pose)
    torso = float(np.linalg.norm(points["neck"] - points["pelvis"])) + _EPS
    ankles_y = float((pose.world[L_ANKLE][1] + pose.world[R_ANKLE][1]) / 2)
    return FrameFeatures(
        vector=np.concatenate([normalised_joints(pose), scalars]),
        angles=measures,
        visibility=pose.mean_visibility,
        lower_body_visibility=pose.lower_body_visibility,
        # World landmarks are centred on the hips, so vertical motion shows as
        # the height of pelvis and neck above the ankles (y points down).
        pelvis_y=(ankles_y - float(points["pelvis"][1])) / torso,
        neck_y=(ankles_y - float(points["neck"][1])) / torso,
    )


_DEGREE_MEASURES: Final = frozenset(
    {"knee", "knee_l", "knee_r", "hip", "hip_l", "hip_r", "elbow", "elbow_l", "elbow_r",
     "shoulder", "trunk_lean", "knee_valgus", "shin_lean", "body_line"}
)


def _motion_source(f: FrameFeatures) -> FloatArray:
    values = [
        f.angles["knee"] / _ANGLE_SCALE,
        f.angles["hip"] / _ANGLE_SCALE,
        f.angles["hip_depth"],
        f.angles["elbow"] / _ANGLE_SCALE,
        f.pelvis_y,
        f.neck_y,
    ]
    return np.array(values, dtype=np.float32)


def feature_names() -> list[str]:
    """Names of the classifier input vector, in order."""
    names = [f"{joint}_{axis}" for joint, _ in BODY_JOINTS for axis in "xyz"]
    names += list(ANGLE_NAMES)
    names += [f"d{lag}_{src}" for lag in MOTION_LAGS for src in MOTION_SOURCES]
    return names


def feature_spec() -> dict[str, object]:
    """Everything a model must agree with to read our feature vector."""
    return {
        "version": FEATURE_SPEC_VERSION,
        "names": feature_names(),
        "motion_lags": list(MOTION_LAGS),
        "degree_scale": _ANGLE_SCALE,
    }


def feature_spec_hash() -> str:
    """Stable hash of ``feature_spec()``; stored with each model and checked at load."""
    blob = json.dumps(feature_spec(), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class FeatureWindow:
    """Per-stream history that turns frame features into the classifier input.

    Frames without a person reset the history: motion across a gap is not motion.
    """

    history: deque[FloatArray] = field(default_factory=lambda: deque(maxlen=max(MOTION_LAGS) + 1))

    def reset(self) -> None:
        self.history.clear()

    def push(self, features: FrameFeatures) -> FloatArray:
        """Add a frame and return the full classifier input for it."""
        current = _motion_source(features)
        self.history.append(current)
        motions = []
        for lag in MOTION_LAGS:
            # Until enough history exists, compare with the oldest frame we have.
            past = self.history[max(0, len(self.history) - 1 - lag)]
            motions.append(current - past)
        vector: FloatArray = np.concatenate([features.vector, *motions]).astype(np.float32)
        return vector
