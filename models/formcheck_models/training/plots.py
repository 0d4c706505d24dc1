"""Figures of an evaluation run (matplotlib, part of the ``[train]`` extra): confusion matrices and ROC curve.

PNG files are written without a software/date stamp, so a re-run with the same
numbers and matplotlib version gives identical bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from formcheck_models.training.metrics import Scores, roc_curve

_PNG_METADATA = {"Software": None}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(path: Path, title: str, panels: list[tuple[str, Scores]]) -> None:
    """One confusion-matrix panel per (caption, scores), counts in the cells, rows = truth."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (caption, scores) in zip(axes[0], panels, strict=True):
        matrix = scores.confusion
        ax.imshow(matrix, cmap="Blues")
        ticks = np.arange(len(scores.labels))
        ax.set_xticks(ticks, scores.labels, rotation=30, ha="right")
        ax.set_yticks(ticks, scores.labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{caption}\nmacro-F1 {scores.macro_f1:.3f}", fontsize=10)
        peak = matrix.max() or 1
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(int(value)), ha="center", va="center",
                    color="white" if value > peak / 2 else "black", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata=_PNG_METADATA)
    plt.close(fig)


def roc_png(path: Path, title: str, truth: npt.NDArray[np.int64], bad_p: npt.NDArray[np.float32], auc: float,
            rule_point: tuple[float, float] | None) -> None:
    """ROC curve of the form head's ``bad_p``, with the rule baseline's single operating point."""
    plt = _pyplot()
    fpr, tpr = roc_curve(truth, bad_p)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, label=f"model bad_p (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    if rule_point is not None:
        ax.plot([rule_point[0]], [rule_point[1]], "o", color="tab:red", label="fault rules")
    ax.set_xlabel("false positive rate (good frames called bad)")
    ax.set_ylabel("true positive rate (bad frames caught)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata=_PNG_METADATA)
    plt.close(fig)
