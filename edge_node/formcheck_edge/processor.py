"""One video frame in, one :class:`FrameMessage` out: pose → features → classifier → faults.

This is the whole per-frame path of an edge node; ``formcheck analyze`` and
the benchmarks run exactly this code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from formcheck_edge.capture import CapturedFrame
from formcheck_edge.classifier import ModelLoadError, PhaseFormClassifier
from formcheck_edge.config import EdgeConfig
from formcheck_edge.faults import frame_faults
from formcheck_edge.features import FeatureWindow, PoseLandmarks, frame_features
from formcheck_edge.pose import PoseEstimator
from formcheck_protocol.messages import Exercise, FrameMessage
from formcheck_runtime.native_log import NativeLogFilter

log = logging.getLogger(__name__)

# Published subset of the body measures: enough for grading and dashboards,
# small enough to keep a frame message around 400 bytes.
PUBLISHED_ANGLES: tuple[str, ...] = (
    "knee", "hip", "trunk_lean", "knee_valgus", "knee_width", "hip_depth", "shin_lean", "heel_lift",
    "elbow", "body_line", "view_yaw", "shoulder_height", "hip_sag",
    # Exercise recognition: the upper arm against the trunk (a curl keeps it there) and whether the feet are in
    # the picture (without them the legs' angles are the pose model's guess).
    "shoulder", "ankle_vis",
    # Per side: alternating curls and lunges work one side at a time, which the two-sided means blur.
    "elbow_l", "elbow_r", "knee_l", "knee_r", "hip_l", "hip_r",
)


@dataclass
class ProcessorTimings:
    """Cumulative per-stage time, for stats and benchmarks."""

    frames: int = 0
    no_person: int = 0
    pose_s: float = 0.0
    classify_s: float = 0.0
    idle_looked: int = 0  # frames an idle node looked at (motion gate or pose check)
    idle_probes: int = 0  # of those, frames the pose model ran on

    def snapshot(self) -> tuple[int, float, float]:
        return self.frames, self.pose_s, self.classify_s


_QUIET_FRAMES = 3
"""Frames after which the native libraries' start-up lines have all been written."""


class WrongExerciseModel(ModelLoadError):
    """The model file found for an exercise classifies another one."""


def _load_classifier(config: EdgeConfig, exercise: Exercise) -> PhaseFormClassifier:
    """The classifier of ``exercise``; refused when the model file found classifies another exercise."""
    classifier = PhaseFormClassifier(config.classifier.model_for(exercise), num_threads=config.classifier.num_threads)
    if classifier.manifest.exercise != exercise:
        raise WrongExerciseModel(f"model {classifier.version} classifies {classifier.manifest.exercise}, "
                                 f"but the node is set to {exercise}")
    return classifier


@dataclass(frozen=True)
class Sighting:
    """What the pose model saw in one frame before it is numbered.

    ``pose`` is None without a person, or when too little of the lower body is visible to judge one.
    """

    ts: int
    pose: PoseLandmarks | None
    vis: float

    @property
    def person(self) -> bool:
        return self.pose is not None


@dataclass(frozen=True)
class Observation:
    """What the pose model saw in one frame, numbered, before body measures and classifier (``classify``)."""

    seq: int
    ts: int
    pose: PoseLandmarks | None
    vis: float


@dataclass
class FrameProcessor:
    """Stateful per-stream processor (pose tracking and motion history live here)."""

    config: EdgeConfig
    boot: str
    exercise: Exercise
    pose: PoseEstimator
    classifiers: dict[Exercise, PhaseFormClassifier]
    timings: ProcessorTimings = field(default_factory=ProcessorTimings)
    _window: FeatureWindow = field(default_factory=FeatureWindow)
    _seq: int = 0
    _looked: int = 0
    _quiet: NativeLogFilter | None = None

    @classmethod
    def create(cls, config: EdgeConfig, boot: str) -> FrameProcessor:
        """Load the pose model and the classifier of the configured exercise (raises on bad models).

        The native libraries' start-up lines are filtered until the first frames are through (``observe``).
        """
        quiet = NativeLogFilter().start()
        try:
            processor = cls._create(config, boot)
        except BaseException:
            quiet.stop()
            raise
        processor._quiet = quiet
        return processor

    @classmethod
    def _create(cls, config: EdgeConfig, boot: str) -> FrameProcessor:
        pose = PoseEstimator(config.pose.model_path(), config.pose)
        exercise = config.node.exercise
        try:
            classifier = _load_classifier(config, exercise)
        except Exception:
            pose.close()
            raise
        return cls(config=config, boot=boot, exercise=exercise, pose=pose, classifiers={exercise: classifier})

    @property
    def classifier(self) -> PhaseFormClassifier:
        """The classifier of the current exercise."""
        return self.classifiers[self.exercise]

    def switch_exercise(self, exercise: Exercise) -> bool:
        """Classify ``exercise`` from now on, if a model for it exists; False otherwise."""
        if exercise == self.exercise:
            return True
        if exercise not in self.classifiers:
            if not self.config.classifier.model_for(exercise).is_file():
                return False
            quiet = NativeLogFilter().start()
            try:
                classifier = _load_classifier(self.config, exercise)
            except WrongExerciseModel:
                return False
            finally:
                quiet.stop()
            self.classifiers[exercise] = classifier
        self.exercise = exercise
        self._window.reset()
        return True

    def process(self, frame: CapturedFrame) -> FrameMessage:
        """Classify one frame; assigns the next ``seq``."""
        return self.classify(self.observe(frame))

    def observe(self, frame: CapturedFrame) -> Observation:
        """The pose of one frame (the expensive part); assigns the next ``seq``."""
        return self.number(self.look(frame))

    def look(self, frame: CapturedFrame) -> Sighting:
        """The pose of one frame, without a ``seq`` yet (an idle node's check for a person numbers only the frame
        it publishes). Nothing else: the edge runs this on its pose thread, everything after it on another."""
        t0 = time.perf_counter()
        pose = self.pose.detect(frame.rgb, frame.ts_ms)
        if self._looked == _QUIET_FRAMES and self._quiet is not None:
            self._quiet.stop()  # the pose graph's threads have logged their set-up by now
        self._looked += 1
        self.timings.pose_s += time.perf_counter() - t0
        return self.sight(frame.ts_ms, pose)

    def sight(self, ts: int, pose: PoseLandmarks | None) -> Sighting:
        """What the pose model's answer for the frame captured at ``ts`` means: a person only when enough of the
        lower body is visible to judge one (``look``, and a recorded pose track played back)."""
        if pose is None:
            return Sighting(ts=ts, pose=None, vis=0.0)
        visible = pose.lower_body_visibility >= self.config.pose.min_visibility
        return Sighting(ts=ts, pose=pose if visible else None, vis=round(pose.mean_visibility, 3))

    def number(self, sighting: Sighting) -> Observation:
        """A sighting becomes the next published frame: ``seq`` counts published frames only."""
        seq = self._seq
        self._seq += 1
        self.timings.frames += 1
        return Observation(seq=seq, ts=sighting.ts, pose=sighting.pose, vis=sighting.vis)

    def classify(self, seen: Observation) -> FrameMessage:
        """The frame message of an observation: body measures, the current exercise's classifier, fault rules.

        Observations go through here in capture order: the classifier's motion window spans consecutive ones.
        """
        if seen.pose is None:
            self._window.reset()
            self.timings.no_person += 1
            return FrameMessage(
                node=self.config.node.id, boot=self.boot, seq=seen.seq, ts=seen.ts, exercise=self.exercise,
                phase="no_person", form="good", bad_p=0.0, vis=seen.vis,
            )
        t0 = time.perf_counter()
        features = frame_features(seen.pose)
        result = self.classifier.classify(self._window.push(features))
        self.timings.classify_s += time.perf_counter() - t0
        angles = {name: round(features.angles[name], 3) for name in PUBLISHED_ANGLES}
        bad = result.bad_p >= self.classifier.manifest.bad_threshold
        return FrameMessage(
            node=self.config.node.id, boot=self.boot, seq=seen.seq, ts=seen.ts, exercise=self.exercise,
            phase=result.phase, phase_p=result.phase_p, form="bad" if bad else "good", bad_p=result.bad_p,
            faults=frame_faults(self.exercise, result.phase, features.angles, self.config.faults),
            angles=angles, vis=seen.vis,
        )

    def close(self) -> None:
        if self._quiet is not None:
            self._quiet.stop()
        self.pose.close()
