"""Classification metrics over pooled held-out predictions (plain numpy: the train extra has no scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClassScores:
    """Per-class precision, recall and F1 (0 where undefined) and support (true count)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Scores:
    """Scores of one head over the frames that carry its label."""

    labels: tuple[str, ...]
    confusion: IntArray
    """``confusion[true, predicted]``."""

    @property
    def frames(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.frames) if self.frames else 0.0

    def per_class(self) -> list[ClassScores]:
        scores = []
        for k in range(len(self.labels)):
            tp = float(self.confusion[k, k])
            predicted = float(self.confusion[:, k].sum())
            actual = float(self.confusion[k, :].sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            scores.append(ClassScores(precision, recall, f1, int(actual)))
        return scores

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes present in the truth (an absent class would score an undefined 0)."""
        present = [s.f1 for s in self.per_class() if s.support > 0]
        return float(np.mean(present)) if present else 0.0


def score(truth: IntArray, predicted: IntArray, labels: tuple[str, ...]) -> Scores:
    """Confusion-matrix scores of ``predicted`` against ``truth`` (class indices into ``labels``)."""
    if truth.shape != predicted.shape:
        raise ValueError(f"truth {truth.shape} and predictions {predicted.shape} differ in shape")
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
    return Scores(labels=labels, confusion=confusion)


FloatArray = npt.NDArray[np.float64]


def roc_curve(truth: IntArray, scores: npt.NDArray[np.floating[Any]]) -> tuple[FloatArray, FloatArray]:
    """False and true positive rates of ``scores >= t`` for every distinct threshold t (class 1 = positive).

    Starts at (0, 0) and ends at (1, 1); tied scores move both rates in one step.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s = np.asarray(scores, dtype=np.float64)[order]
    t = np.asarray(truth)[order] == 1
    positives, negatives = int(t.sum()), int((~t).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("a ROC curve needs both classes in the truth")
    # Indices where the score changes: thresholds between distinct values.
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(t)[last_of_run]
    fp = np.cumsum(~t)[last_of_run]
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def roc_auc(truth: IntArray, scores: npt.NDArray[np.floating[Any]]) -> float | None:
    """Area under the ROC curve (trapezoids: ties count one half), or None when a class is absent."""
    t = np.asarray(truth)
    if not ((t == 1).any() and (t == 0).any()):
        return None
    fpr, tpr = roc_curve(truth, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
