"""Where formcheck finds its data set, models and caches.

Nothing here is resolved against the source checkout at run time: the committed classifiers are package data
(``importlib.resources``), the pose model ``formcheck models build`` makes is written to a writable location named
by the environment (never into site-packages), and the data set is configured by ``$FORMCHECK_DATA``.
``REPO_ROOT`` is the source checkout for the development tools only (tests, docs generation, training reports).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
"""The source checkout (tests, docs generation, training reports); an installed copy never reads it."""
SOURCE_FOLDERS = tuple(REPO_ROOT / name for name in
                       (".", "protocol", "runtime", "edge_node", "aggregator", "dashboards", "models"))
"""The checkout's folders that hold the packages (pyproject.toml's ``packages.find.where``): ``sys.path`` for running
the checkout's code without installing it (the emulated Raspberry Pi)."""
DATA_ENV = "FORMCHECK_DATA"
CACHE_ENV = "FORMCHECK_CACHE"
MODELS_DIR_ENV = "FORMCHECK_MODELS_DIR"
POSE_MODEL_NAME = "pose_landmarker_full.task"


class DataMissingError(RuntimeError):
    """The development data set is not where the configuration says."""


def data_dir() -> Path:
    """The labelled data set: ``$FORMCHECK_DATA``, else ``../shared/data`` beside the checkout."""
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
    """Per-user cache for derived data: ``$FORMCHECK_CACHE/formcheck``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    base = os.environ.get(CACHE_ENV) or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "formcheck"


def models_dir() -> Path:
    """Where built models live: ``$FORMCHECK_MODELS_DIR``, else ``models`` in the cache.

    The pose model is derived from the installed mediapipe (``formcheck models build``), so a cache suits it;
    a deployment names a fixed place instead (``/var/lib/formcheck/models`` on a Raspberry Pi,
    ``/opt/formcheck/models`` in the edge image).
    """
    configured = os.environ.get(MODELS_DIR_ENV)
    return Path(configured).expanduser() if configured else cache_dir() / "models"


POSE_MODEL = models_dir() / POSE_MODEL_NAME
"""The pose model ``formcheck models build`` writes and the edge reads by default (``pose.model`` overrides)."""


def _package_dir(name: str) -> Path:
    """Where the import system finds package ``name`` (found, not imported: the aggregator never loads ``models``)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


ARTIFACTS_DIR = _package_dir("formcheck_models") / "artifacts"
"""The committed classifiers: package data of ``formcheck_models``."""
REPORTS_DIR = REPO_ROOT / "models"
"""Where the training and evaluation reports (``REPORT_*.md``, ``reports/``) are written: the checkout's ``models/``."""


def classifier_model(exercise: str) -> Path:
    """Committed classifier model for ``exercise`` (package data)."""
    return ARTIFACTS_DIR / f"{exercise}_phase_form.tflite"
