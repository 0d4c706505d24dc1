"""Where formcheck finds its data set, models and caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
ARTIFACTS_DIR = MODELS_DIR / "artifacts"
POSE_MODEL = MODELS_DIR / "pose_landmarker_full.task"
DATA_ENV = "FORMCHECK_DATA"


class DataMissingError(RuntimeError):
    """The development data set is not where the configuration says."""


def data_dir() -> Path:
    """The labelled data set: ``$FORMCHECK_DATA``, else ``../shared/data`` beside the repository."""
    configured = os.environ.get(DATA_ENV)
    return Path(configured).expanduser().resolve() if configured else (REPO_ROOT.parent / "shared" / "data").resolve()


def require_data_dir() -> Path:
    """``data_dir()``, or a one-line error naming the variable to set."""
    path = data_dir()
    if not (path / "ground_truth.csv").is_file():
        raise DataMissingError(
            f"data set not found at {path} (no ground_truth.csv): set {DATA_ENV} to the folder with the clips"
        )
    return path


def cache_dir() -> Path:
    """Per-user cache for derived data (pose tracks of clips, downloaded wheels)."""
    base = os.environ.get("FORMCHECK_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "formcheck"


def classifier_model(exercise: str) -> Path:
    """Committed classifier model for ``exercise``."""
    return ARTIFACTS_DIR / f"{exercise}_phase_form.tflite"
