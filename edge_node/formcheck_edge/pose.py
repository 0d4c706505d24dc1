"""MediaPipe Tasks PoseLandmarker in VIDEO mode (tracking between frames)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Final

import numpy as np
import numpy.typing as npt

from formcheck_edge.config import PoseSection
from formcheck_edge.features import NUM_LANDMARKS, PoseLandmarks

log = logging.getLogger(__name__)


LANDMARKER_SETTINGS: Final = ("min_detection_confidence", "min_tracking_confidence", "min_presence_confidence")
"""The pose settings the landmarker is built from: with the model, the runtime and this code, all that shapes a pose
track (a cached track's key holds their values: ``formcheck_models.training.dataset.pose_pipeline_id``)."""


class PoseModelError(RuntimeError):
    """The pose model could not be loaded; the message is one line for the operator."""


class PoseEstimator:
    """Detects one person per frame. Not thread-safe: one instance per stream.

    VIDEO mode needs strictly increasing timestamps; :meth:`detect` enforces
    that so a camera whose clock stutters does not abort the graph.
    """

    def __init__(self, model_path: Path, settings: PoseSection | None = None) -> None:
        """``settings``: the node's pose settings (``LANDMARKER_SETTINGS`` are read), their defaults if None."""
        settings = settings or PoseSection()
        if not model_path.is_file():
            raise PoseModelError(f"pose model not found: {model_path} (run 'make model' or 'formcheck models build')")
        # MediaPipe logs through glog/absl to stderr; keep the operator's log readable.
        os.environ.setdefault("GLOG_minloglevel", "2")
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_poses=1,
            min_pose_detection_confidence=settings.min_detection_confidence,
            min_tracking_confidence=settings.min_tracking_confidence,
            min_pose_presence_confidence=settings.min_presence_confidence,
        )
        try:
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise PoseModelError(f"cannot load pose model {model_path}: {str(exc).splitlines()[0]}") from exc
        self._last_ts_ms = -1

    def detect(self, rgb: npt.NDArray[np.uint8], timestamp_ms: int) -> PoseLandmarks | None:
        """Landmarks of the most prominent person in an RGB frame, or ``None``."""
        import mediapipe as mp

        ts = max(int(timestamp_ms), self._last_ts_ms + 1)
        self._last_ts_ms = ts
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect_for_video(image, ts)
        if not result.pose_world_landmarks or not result.pose_landmarks:
            return None
        world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks[0]], dtype=np.float32)
        vis = np.array([p.visibility or 0.0 for p in result.pose_landmarks[0]], dtype=np.float32)
        if world.shape[0] != NUM_LANDMARKS:
            return None
        return PoseLandmarks(world=world, visibility=vis)

    def close(self) -> None:
        landmarker = getattr(self, "_landmarker", None)
        if landmarker is not None:
            landmarker.close()
            self._landmarker = None

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
