"""Held-out scoring and class weighting (pure numpy, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from formcheck_models.training.labels import IGNORE
from formcheck_models.training.metrics import score
from formcheck_models.training.train import balanced_weights


def test_confusion_accuracy_and_per_class_scores() -> None:
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 0, 2])
    s = score(truth, predicted, ("a", "b", "c"))
    np.testing.assert_array_equal(s.confusion, [[2, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert s.frames == 6
    assert s.accuracy == pytest.approx(4 / 6)
    a, b, c = s.per_class()
    assert a.precision == pytest.approx(2 / 3) and a.recall == pytest.approx(2 / 3) and a.support == 3
    assert b.precision == pytest.approx(0.5) and b.recall == pytest.approx(0.5)
    assert c.f1 == pytest.approx(1.0)
    assert s.macro_f1 == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_macro_f1_ignores_classes_absent_from_the_truth() -> None:
    s = score(np.array([0, 0, 1]), np.array([0, 0, 1]), ("a", "b", "c"))
    assert s.macro_f1 == pytest.approx(1.0)


def test_never_predicted_class_scores_zero_not_nan() -> None:
    s = score(np.array([0, 1, 1]), np.array([0, 0, 0]), ("good", "bad"))
    assert s.per_class()[1].precision == 0.0
    assert s.per_class()[1].f1 == 0.0


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        score(np.array([0, 1]), np.array([0]), ("a", "b"))


def test_balanced_weights_equalise_classes_and_drop_ignored_frames() -> None:
    labels = np.array([0, 0, 0, 1, IGNORE], dtype=np.int64)
    w = balanced_weights(labels, 3)
    assert w[4] == 0.0
    assert w[:3].sum() == pytest.approx(w[3])  # each present class carries the same total weight
    assert w[:4].sum() == pytest.approx(4.0)  # mean weight 1 over the labelled frames
