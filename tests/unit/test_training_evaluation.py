"""Evaluation helpers without TensorFlow: ROC, rule baseline, per-rep split of a one-person clip."""

from __future__ import annotations

import numpy as np
import pytest

from formcheck_models.training.dataset import Clip, ClipFeatures, ClipPoses, ClipTruth, split_by_rep
from formcheck_models.training.labels import ASCENDING, BOTTOM, DESCENDING, IGNORE, STANDING
from formcheck_models.training.metrics import roc_auc, roc_curve
from formcheck_models.training.rule_baseline import rule_bad, rule_phases


def test_roc_of_perfect_random_and_tied_scores() -> None:
    truth = np.array([0, 0, 1, 1], dtype=np.int64)
    assert roc_auc(truth, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert roc_auc(truth, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.0)
    assert roc_auc(truth, np.full(4, 0.5)) == pytest.approx(0.5)  # one tie: the diagonal
    fpr, tpr = roc_curve(truth, np.array([0.1, 0.6, 0.4, 0.9]))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert roc_auc(truth, np.array([0.1, 0.6, 0.4, 0.9])) == pytest.approx(0.75)
    assert roc_auc(np.zeros(3, dtype=np.int64), np.array([0.1, 0.2, 0.3])) is None


def test_rule_phases_from_level_and_speed() -> None:
    # Curl elbow: rest 160, curls to 50 at 30 fps and back; 60 deg/s = 2 deg/frame is the moving threshold.
    elbow = np.array([160, 160, 160, 150, 130, 100, 70, 50, 50, 50, 50, 80, 120, 160, 160, 160, np.nan], np.float32)
    phases = rule_phases("curl", {"elbow": elbow}, fps=30.0)
    assert phases[0] == STANDING and phases[-1] == IGNORE
    assert DESCENDING in phases[3:7] and BOTTOM in phases[9:11] and ASCENDING in phases[11:14]
    bad = rule_bad("curl", {"elbow": elbow, "trunk_lean": np.full(elbow.shape, 30.0, np.float32)}, phases)
    assert bad[0] == 0 and bad[-1] == IGNORE  # standing still is never a fault
    assert bad[9] == 1  # trunk 30 deg from vertical while curling: swinging


def test_one_person_clip_is_split_between_reps() -> None:
    n = 100
    truth = ClipTruth(path="videos/curl/c.mp4", exercise="curl", view="side", complete_reps=3, partial_reps=0,
                      bottom_frames=(20, 50, 80), form=("good", "good", "good"), confidence="high")
    poses = ClipPoses(fps=30.0, world=np.zeros((n, 33, 3), np.float32), visibility=np.ones((n, 33), np.float32),
                      present=np.ones(n, bool))
    features = ClipFeatures(vectors=np.arange(n, dtype=np.float32).reshape(n, 1),
                            measures={"elbow": np.arange(n, dtype=np.float32)}, present=np.ones(n, bool))
    parts = split_by_rep(Clip(truth=truth, group="c", poses=poses, features=features))
    assert [p.truth.bottom_frames for p in parts] == [(20,), (15,), (15,)]  # cuts at 35 and 65
    assert [p.poses.frames for p in parts] == [35, 30, 35]
    assert [p.group for p in parts] == ["c_rep1", "c_rep2", "c_rep3"]
    assert parts[1].features.vectors[0, 0] == 35.0
