"""Train, evaluate and export the per-frame phase/form classifier of one exercise.

Model: the raw ``FeatureWindow`` vector → standardisation baked in as a Keras
``Normalization`` layer (mean/std of the training frames) → small MLP → two
heads: phase softmax over ``MODEL_PHASES`` and bad-form sigmoid. Training
frames of squat, push-up and lunge are augmented with simulated camera changes
(:mod:`formcheck_models.training.augment`: mirroring, yaw, distance, jitter, dropped
landmarks), and all get Gaussian noise on the standardised features; held-out
frames never are.

Evaluation is leave-one-group-out: a group is a clip, or all clips of one
person where the data README says so; for lunge (``SOURCE_GROUPED``) all clips
of one source repository. Every frame's held-out prediction comes
from a model that never saw that person; predictions are pooled over all folds
and scored once. The same fold models also predict every frame of their
held-out clips in order, and those outputs go through the edge node's message
building and the aggregator's rep counter (:mod:`formcheck_models.training.rep_eval`):
held-out rep counts against the ground truth. The shipped model is then
trained on all clips.

Needs the ``[train]`` extra (TensorFlow); TensorFlow is imported lazily so the
``formcheck`` command can report its absence in one line.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from formcheck_edge.classifier import MODEL_PHASES, HeldOutMetrics, ModelManifest, PhaseFormClassifier
from formcheck_edge.features import FEATURE_SPEC_VERSION, feature_names, feature_spec_hash
from formcheck_models.training import labels as labelling
from formcheck_models.training.augment import AugmentConfig, augmented_copies, config_for
from formcheck_models.training.dataset import (
    SOURCE_GROUPED,
    TRAINING_CLIPS,
    Clip,
    ClipFeatures,
    clip_features,
    data_files,
    load_clips,
    split_by_rep,
)
from formcheck_models.training.labels import IGNORE, FrameLabels, LabelRules, depth_signal, label_clip
from formcheck_models.training.metrics import Scores, score
from formcheck_models.training.rep_eval import ClipRepCount, evaluate_clip, frame_messages, run_station
from formcheck_models.training.report import ClipSummary
from formcheck_protocol.messages import EXERCISES, Exercise
from formcheck_runtime.paths import DataMissingError, classifier_model, require_data_dir

if TYPE_CHECKING:
    import keras

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

MODEL_VERSION: Final = "1.3.0"
BAD_THRESHOLD: Final = 0.5
FORM_LABELS: Final = ("good", "bad")
EXPORT_TOLERANCE: Final = 1e-4
_VERIFY_FRAMES: Final = 60
# Features that barely vary in training would be blown up by standardisation at runtime.
_MIN_STD: Final = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters, fixed before evaluation (never tuned on held-out folds)."""

    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    noise_std: float = 0.1
    l2: float = 1e-4
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 1234


@dataclass(frozen=True)
class FrameSet:
    """Labelled frames of several clips; ``clip`` indexes the clip list they came from."""

    x: FloatArray
    phase: IntArray
    bad: IntArray
    clip: IntArray

    def subset(self, mask: npt.NDArray[np.bool_]) -> FrameSet:
        return FrameSet(x=self.x[mask], phase=self.phase[mask], bad=self.bad[mask], clip=self.clip[mask])

    def __len__(self) -> int:
        return int(self.phase.shape[0])


@dataclass(frozen=True)
class Predictions:
    """Predicted phase probabilities and bad-form probability per frame."""

    phase_p: FloatArray
    bad_p: FloatArray

    @property
    def phase(self) -> IntArray:
        return np.asarray(np.argmax(self.phase_p, axis=1), dtype=np.int64)

    @property
    def bad(self) -> IntArray:
        return (self.bad_p >= BAD_THRESHOLD).astype(np.int64)


def clip_labels(clip: Clip, rules: LabelRules) -> FrameLabels:
    """Derived per-frame labels of one clip (rules in :mod:`formcheck_models.training.labels`)."""
    t = clip.truth
    return label_clip(depth_signal(t.exercise, clip.features.measures), t.bottom_frames, t.form, t.partial_reps, rules)


def _kept_frames(features: ClipFeatures, lab: FrameLabels) -> npt.NDArray[np.bool_]:
    """Frames of a clip that go into the ``FrameSet``: a person and at least one label."""
    keep: npt.NDArray[np.bool_] = features.present & ((lab.phase != IGNORE) | (lab.bad != IGNORE))
    return keep


def concat_frame_sets(parts: Sequence[FrameSet]) -> FrameSet:
    """One ``FrameSet`` of ``parts`` in order (clip indices kept as they are)."""
    return FrameSet(
        x=np.concatenate([p.x for p in parts]).astype(np.float32),
        phase=np.concatenate([p.phase for p in parts]),
        bad=np.concatenate([p.bad for p in parts]),
        clip=np.concatenate([p.clip for p in parts]),
    )


def _labelled_frames(index: int, name: str, features: ClipFeatures, lab: FrameLabels) -> FrameSet:
    keep = _kept_frames(features, lab)
    x = features.vectors[keep]
    if not np.isfinite(x).all():
        raise ValueError(f"non-finite features in {name}")
    return FrameSet(x=x, phase=lab.phase[keep], bad=lab.bad[keep], clip=np.full(int(keep.sum()), index, dtype=np.int64))


def build_frame_set(clips: Sequence[Clip], frame_labels: Sequence[FrameLabels]) -> FrameSet:
    """Frames that carry at least one label, with their feature vectors."""
    return concat_frame_sets([_labelled_frames(i, clip.truth.name, clip.features, lab)
                              for i, (clip, lab) in enumerate(zip(clips, frame_labels, strict=True))])


def build_augmented_set(
    clips: Sequence[Clip], frame_labels: Sequence[FrameLabels], config: AugmentConfig
) -> FrameSet | None:
    """Augmented copies of every clip's labelled frames, with the source clip's labels and clip index.

    A camera change does not change the movement, so each copy keeps its source frame's phase and form;
    the copies' features come from the same ``clip_features`` (``FeatureWindow`` and ``no_person`` gate)
    as the originals. ``clip`` is the source clip, so a fold drops the copies of its held-out group.
    """
    parts = [
        _labelled_frames(i, f"{clip.truth.name} (augmented)", clip_features(poses), lab)
        for i, (clip, lab) in enumerate(zip(clips, frame_labels, strict=True))
        for poses in augmented_copies(clip.poses, i, config)
    ]
    return concat_frame_sets(parts) if parts else None


def balanced_weights(labels: IntArray, classes: int) -> FloatArray:
    """Per-sample weights n / (k · n_class) over the labelled samples; 0 for ``IGNORE``."""
    labelled = labels != IGNORE
    counts = np.bincount(labels[labelled], minlength=classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(classes)
    per_class[present] = labelled.sum() / (present.sum() * counts[present])
    return np.where(labelled, per_class[np.where(labelled, labels, 0)], 0.0).astype(np.float32)


def _deterministic_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def model_path_for(exercise: str, out_dir: Path | None) -> Path:
    """Where the model of ``exercise`` is written: ``out_dir`` or the committed artefacts folder."""
    default = classifier_model(exercise)
    return out_dir / default.name if out_dir is not None else default


def build_model(mean: FloatArray, std: FloatArray, config: TrainConfig) -> keras.Model:
    """MLP with input standardisation baked in, so the runtime feeds raw feature vectors."""
    import keras

    inputs = keras.Input(shape=(mean.shape[0],), name="features")
    x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardise")(inputs)
    x = keras.layers.GaussianNoise(config.noise_std, seed=config.seed, name="augment")(x)
    for i, width in enumerate(config.hidden):
        x = keras.layers.Dense(width, activation="relu", kernel_regularizer=keras.regularizers.L2(config.l2),
                               name=f"dense{i}")(x)
        x = keras.layers.Dropout(config.dropout, seed=config.seed + i, name=f"dropout{i}")(x)
    phase = keras.layers.Dense(len(MODEL_PHASES), activation="softmax", name="phase")(x)
    bad = keras.layers.Dense(1, activation="sigmoid", name="bad")(x)
    model = keras.Model(inputs, {"phase": phase, "bad": bad})
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={"phase": "sparse_categorical_crossentropy", "bad": "binary_crossentropy"},
    )
    return model


def fit(train: FrameSet, config: TrainConfig) -> keras.Model:
    """Train on ``train`` from a fixed seed: the same frames give the same model."""
    import keras

    # A fresh Keras state per model: layer name counters and seed generators otherwise carry over from the
    # models built before in the same process, and the same frames would give different bytes.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    mean = train.x.mean(axis=0)
    std = np.maximum(train.x.std(axis=0), _MIN_STD)
    model = build_model(mean.astype(np.float32), std.astype(np.float32), config)
    targets = {"phase": np.maximum(train.phase, 0), "bad": np.maximum(train.bad, 0).astype(np.float32)}
    weights = {"phase": balanced_weights(train.phase, len(MODEL_PHASES)),
               "bad": balanced_weights(train.bad, len(FORM_LABELS))}
    # Our own batching instead of fit(): fit() routes numpy through tf.data, whose op-version warnings flood
    # the terminal, and a seeded permutation keeps the batch order reproducible.
    rng = np.random.default_rng(config.seed)
    for _ in range(config.epochs):
        order = rng.permutation(len(train))
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            model.train_on_batch(train.x[batch], {k: v[batch] for k, v in targets.items()},
                                 sample_weight={k: v[batch] for k, v in weights.items()})
    return model


def predict(model: keras.Model, x: FloatArray) -> Predictions:
    out = model(x, training=False)
    return Predictions(phase_p=np.asarray(out["phase"], dtype=np.float32),
                       bad_p=np.asarray(out["bad"], dtype=np.float32).reshape(-1))


def _model_runs(vectors: FloatArray) -> npt.NDArray[np.bool_]:
    """Frames of a clip the edge node would classify (the others are NaN rows: ``no_person``)."""
    runs: npt.NDArray[np.bool_] = np.asarray(np.isfinite(vectors).all(axis=1), dtype=bool)
    return runs


def _no_outputs(frames: int) -> Predictions:
    return Predictions(phase_p=np.full((frames, len(MODEL_PHASES)), np.nan, dtype=np.float32),
                       bad_p=np.full(frames, np.nan, dtype=np.float32))


def predict_clip(model: keras.Model, vectors: FloatArray) -> Predictions:
    """Outputs for every frame of a clip in order; NaN rows where the edge node would not run the model."""
    runs = _model_runs(vectors)
    out = _no_outputs(vectors.shape[0])
    if runs.any():
        preds = predict(model, vectors[runs])
        out.phase_p[runs] = preds.phase_p
        out.bad_p[runs] = preds.bad_p
    return out


def fold_training_set(frames: FrameSet, groups: Sequence[str], held_out: str, augmented: FrameSet | None) -> FrameSet:
    """Training frames of the fold that holds ``held_out`` out: other groups' frames and their augmented copies."""
    own = np.array([groups[c] == held_out for c in frames.clip], dtype=bool)
    if augmented is None:
        return frames.subset(~own)
    own_copies = np.array([groups[c] == held_out for c in augmented.clip], dtype=bool)
    return concat_frame_sets([frames.subset(~own), augmented.subset(~own_copies)])


@dataclass(frozen=True)
class CrossValidation:
    """Held-out outputs: per labelled frame of the ``FrameSet``, and per frame of each whole clip."""

    frames: Predictions
    clips: tuple[Predictions, ...]
    """``clips[c]``: every frame of clip ``c`` (``predict_clip``) from its group's fold model."""


def cross_validate(
    frames: FrameSet, groups: Sequence[str], config: TrainConfig, clip_vectors: Sequence[FloatArray] = (),
    augmented: FrameSet | None = None,
) -> CrossValidation:
    """Leave-one-group-out predictions for every frame (``groups[clip]`` names a clip's group).

    ``clip_vectors[c]`` (all frames of clip ``c``, NaN rows where there is no person) are predicted by the
    same fold model that predicts the clip's labelled frames, for the held-out rep counting. ``augmented``
    frames (``clip`` = source clip) join the training folds of every group but their own source's.
    """
    phase_p = np.zeros((len(frames), len(MODEL_PHASES)), dtype=np.float32)
    bad_p = np.zeros(len(frames), dtype=np.float32)
    # A clip without a single frame with a person needs no model: all its frames are no_person.
    clips = [_no_outputs(vectors.shape[0]) for vectors in clip_vectors]
    frame_group = np.array([groups[c] for c in frames.clip])
    for group in sorted(set(groups)):
        held_out = frame_group == group
        members = [c for c, vectors in enumerate(clip_vectors) if groups[c] == group and _model_runs(vectors).any()]
        if not held_out.any() and not members:
            continue
        model = fit(fold_training_set(frames, groups, group, augmented), config)
        if held_out.any():
            preds = predict(model, frames.x[held_out])
            phase_p[held_out] = preds.phase_p
            bad_p[held_out] = preds.bad_p
        for c in members:
            clips[c] = predict_clip(model, clip_vectors[c])
    return CrossValidation(frames=Predictions(phase_p=phase_p, bad_p=bad_p), clips=tuple(clips))


def held_out_rep_counts(
    exercise: Exercise, clips: Sequence[Clip], frame_labels: Sequence[FrameLabels], frames: FrameSet,
    cv: CrossValidation,
) -> tuple[ClipRepCount, ...]:
    """Each clip's frames, with its fold model's outputs, through the station logic; compared to the truth.

    First checks that the whole-clip outputs equal the pooled CV outputs on the clip's labelled frames,
    i.e. that both come from the same fold model.
    """
    results: list[ClipRepCount] = []
    for c, (clip, lab, preds) in enumerate(zip(clips, frame_labels, cv.clips, strict=True)):
        rows = frames.clip == c
        keep = _kept_frames(clip.features, lab)
        if rows.any():
            diff = float(np.abs(np.concatenate([
                (preds.phase_p[keep] - cv.frames.phase_p[rows]).ravel(), preds.bad_p[keep] - cv.frames.bad_p[rows],
            ])).max())
            if not diff <= EXPORT_TOLERANCE:
                raise RuntimeError(f"{clip.truth.name}: whole-clip outputs differ from the CV outputs by {diff:.2e}")
        messages = frame_messages(clip.poses, preds.phase_p, preds.bad_p, exercise=exercise,
                                  bad_threshold=BAD_THRESHOLD)
        results.append(evaluate_clip(clip.truth, clip.group, run_station(messages, exercise)))
    return tuple(results)


def head_scores(
    frames: FrameSet, preds: Predictions, mask: npt.NDArray[np.bool_] | None = None
) -> tuple[Scores, Scores]:
    """Phase and form scores over the frames (within ``mask``) that carry each label."""
    rows = np.ones(len(frames), dtype=bool) if mask is None else mask
    has_phase = rows & (frames.phase != IGNORE)
    has_form = rows & (frames.bad != IGNORE)
    return (score(frames.phase[has_phase], preds.phase[has_phase], MODEL_PHASES),
            score(frames.bad[has_form], preds.bad[has_form], FORM_LABELS))


def majority_baseline(frames: FrameSet) -> Predictions:
    """Constant prediction of the most frequent phase and form."""
    phase = np.bincount(frames.phase[frames.phase != IGNORE], minlength=len(MODEL_PHASES))
    bad = np.bincount(frames.bad[frames.bad != IGNORE], minlength=len(FORM_LABELS))
    phase_p = np.zeros((len(frames), len(MODEL_PHASES)), dtype=np.float32)
    phase_p[:, int(np.argmax(phase))] = 1.0
    return Predictions(phase_p=phase_p, bad_p=np.full(len(frames), float(np.argmax(bad)), dtype=np.float32))


def export_tflite(model: keras.Model, path: Path) -> None:
    """Float32 TFLite with one ``[1, N]`` input, as the edge runtime feeds it.

    Goes through a SavedModel because converting a Keras 3 model's concrete
    function directly leaves its weights as resource variables, which LiteRT
    then reads as uninitialised (NaN outputs). Only builtin ops are allowed:
    the edge runtime has no TensorFlow (Flex) delegate.
    """
    import keras
    import tensorflow as tf

    n = int(model.inputs[0].shape[-1])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                         input_signature=[tf.TensorSpec([1, n], tf.float32, name="features")])
    with tempfile.TemporaryDirectory() as saved_model:
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        blob = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def verify_export(model: keras.Model, path: Path, vectors: FloatArray) -> float:
    """Largest difference between Keras and the exported model run through the edge runtime (inf if not finite)."""
    classifier = PhaseFormClassifier(path)
    expected = predict(model, vectors)
    got = [classifier.classify(vector) for vector in vectors]
    got_phase = np.array([[g.phase_p[p] for p in MODEL_PHASES] for g in got])
    got_bad = np.array([g.bad_p for g in got])
    diffs = np.concatenate([np.abs(got_phase - expected.phase_p).ravel(), np.abs(got_bad - expected.bad_p)])
    return float(diffs.max()) if np.isfinite(diffs).all() else float("inf")


def _clip_summary(clip: Clip, lab: FrameLabels) -> ClipSummary:
    usable = clip.features.present
    return ClipSummary(
        name=clip.truth.name,
        group=clip.group,
        view=clip.truth.view,
        frames=clip.poses.frames,
        with_person=int(usable.sum()),
        phase_counts=tuple(int(((lab.phase == k) & usable).sum()) for k in range(len(MODEL_PHASES))),
        good=int(((lab.bad == 0) & usable).sum()),
        bad=int(((lab.bad == 1) & usable).sum()),
        reps=sum(1 for r in lab.reps if r.form is not None),
        partial_reps_labelled=sum(1 for r in lab.reps if r.form is None),
    )


def _evaluation_method(clips: Sequence[Clip]) -> str:
    groups: dict[str, list[str]] = {}
    for clip in clips:
        groups.setdefault(clip.group, []).append(clip.truth.name)
    shared = [f"{g} = {', '.join(names)}" for g, names in sorted(groups.items()) if len(names) > 1]
    if clips and clips[0].truth.exercise in SOURCE_GROUPED:
        return (f"Leave-one-source-out cross-validation over {len(groups)} source repositories ({len(clips)} clips): "
                "each group is every clip of one source repository named in the data README (several clips of "
                f"one source: {'; '.join(shared) or 'none'}). Each fold trains on the other sources and predicts "
                "the held-out one; all held-out predictions are pooled and scored once. Nothing was chosen on "
                "these folds: architecture, hyper-parameters, label rules and augmentation are the squat model's, "
                f"fixed before the folds were run. With {len(groups)} sources, one held-out source is a large "
                "share of the frames: read the per-source table, not only the pooled figures. Form is not "
                "measured: every rep of these clips is labelled `good` or `unclear`, so the form head has only "
                "ever seen `good` and its figures below are trivially perfect. The data set's lunge keypoint tables "
                "(stage and knee-over-toe labels) hold 13 image landmarks of single frames, not the world landmarks "
                "and motion the edge's features are computed from, so they are not used.")
    if any(c.truth.segment for c in clips):
        return (f"Leave-one-rep-out cross-validation over {len(groups)} parts of the only clip(s), each cut halfway "
                "between labelled bottom frames: the data set has one person for this exercise, so every fold "
                "trains on the same person, camera and session it is tested on. These figures are optimistic and "
                "are NOT a new-person estimate. All held-out predictions are pooled and scored once.")
    return (f"Leave-one-group-out cross-validation over {len(groups)} groups: each group is one clip, except "
            f"clips of the same person ({'; '.join(shared) or 'none'}). Each fold trains on the other groups and "
            "predicts the held-out one; all held-out predictions are pooled and scored once.")


def _fault_groups(clips: Sequence[Clip]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Groups whose clips contain fault reps, with the fault labels seen in each."""
    faults: dict[str, set[str]] = {}
    for clip in clips:
        seen = set(clip.truth.form) & labelling.FAULT_LABELS
        if seen:
            faults.setdefault(clip.group, set()).update(seen)
    return tuple((group, tuple(sorted(labels))) for group, labels in sorted(faults.items()))


def _held_out(phase: Scores, form: Scores, frames: int, method: str) -> HeldOutMetrics:
    return HeldOutMetrics(
        phase_accuracy=round(phase.accuracy, 4), phase_macro_f1=round(phase.macro_f1, 4),
        form_accuracy=round(form.accuracy, 4), form_macro_f1=round(form.macro_f1, 4),
        frames=frames, method=method,
    )


def _exercise(name: str) -> Exercise:
    for exercise in EXERCISES:
        if exercise == name:
            return exercise
    raise ValueError(f"unknown exercise {name!r}")


@dataclass(frozen=True)
class Prepared:
    """Clips of one exercise with their derived labels and the labelled frames."""

    exercise: Exercise
    clips: tuple[Clip, ...]
    groups: tuple[str, ...]
    frame_labels: tuple[FrameLabels, ...]
    frames: FrameSet
    augmented: FrameSet | None
    """Augmented copies of the labelled frames (training only; ``clip`` = source clip), None without."""


def prepare(exercise: str, rules: LabelRules, augment: AugmentConfig) -> Prepared:
    """Load the clips (one held-out group per person; per rep when there is one person only) and label them."""
    data_dir = require_data_dir()
    clips = load_clips(exercise, data_dir, only=TRAINING_CLIPS.get(exercise))
    if len({c.group for c in clips}) == 1:
        # One person only (curl): hold out one rep at a time. Optimistic (same person, camera and session),
        # and the report says so.
        clips = [part for clip in clips for part in split_by_rep(clip)]
    groups = tuple(c.group for c in clips)
    if len(set(groups)) < 2:
        raise DataMissingError(f"held-out evaluation needs {exercise} clips of at least two people (or reps), "
                               f"found {len(set(groups))} group(s)")
    frame_labels = tuple(clip_labels(c, rules) for c in clips)
    return Prepared(exercise=_exercise(exercise), clips=tuple(clips), groups=groups, frame_labels=frame_labels,
                    frames=build_frame_set(clips, frame_labels),
                    augmented=build_augmented_set(clips, frame_labels, augment))


def write_manifest(path: Path, manifest: ModelManifest) -> None:
    path.with_suffix(".json").write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")


def train_final(prep: Prepared, out_dir: Path | None, config: TrainConfig) -> tuple[Path, float]:
    """Train the shipped model on every labelled frame, export it, check the export; (model path, max diff).

    The manifest carries no time stamp, so the same data and code give byte-identical files; its
    ``held_out`` figures are filled in by ``formcheck models evaluate``.
    """
    _deterministic_tf()
    model = fit(prep.frames if prep.augmented is None else concat_frame_sets([prep.frames, prep.augmented]), config)
    model_path = model_path_for(prep.exercise, out_dir)
    export_tflite(model, model_path)
    manifest = ModelManifest.model_validate({
        "name": model_path.stem, "version": MODEL_VERSION, "exercise": prep.exercise,
        "feature_spec_version": FEATURE_SPEC_VERSION, "feature_spec_hash": feature_spec_hash(),
        "input_size": len(feature_names()), "phases": list(MODEL_PHASES), "bad_threshold": BAD_THRESHOLD,
        "trained_on": data_files(prep.clips),
    })
    write_manifest(model_path, manifest)
    # Frames spread over a whole clip with reps, so every phase is exercised, not only the opening stance.
    sample = next(c for c in prep.clips if c.truth.complete_reps > 0).features
    present = sample.vectors[sample.present]
    vectors = present[np.linspace(0, len(present) - 1, min(_VERIFY_FRAMES, len(present))).astype(int)]
    max_diff = verify_export(model, model_path, vectors)
    if max_diff > EXPORT_TOLERANCE:
        raise RuntimeError(f"exported model differs from Keras by {max_diff:.2e} (> {EXPORT_TOLERANCE})")
    return model_path, max_diff


def _selected(exercise: str) -> list[str] | None:
    """Exercises named by ``exercise`` ('all' = every exercise with data), or None after printing an error."""
    if exercise == "all":
        return list(TRAINED_EXERCISES)
    if exercise not in EXERCISES:
        print(f"unknown exercise {exercise!r}: choose one of all, {', '.join(EXERCISES)}", file=sys.stderr)
        return None
    return [exercise]


def ready_exercises(exercise: str, without_tensorflow: str) -> list[str] | None:
    """The exercises to train or evaluate, or None after a one-line error (unknown name, no data, no TensorFlow).

    Cheap checks first, so a missing data set is reported even without TensorFlow.
    """
    names = _selected(exercise)
    if names is None:
        return None
    try:
        require_data_dir()
    except DataMissingError as exc:
        print(str(exc), file=sys.stderr)
        return None
    if importlib.util.find_spec("tensorflow") is None:
        print(without_tensorflow, file=sys.stderr)
        return None
    return names


TRAINED_EXERCISES: Final = ("squat", "pushup", "curl", "lunge")
"""Exercises the data set has clips of, each with a committed model."""


def train_main(exercise: str = "all", out_dir: Path | None = None) -> int:
    """Train and export the classifier of ``exercise`` ('all': each in turn); returns an exit code.

    ``out_dir`` receives the model and manifest instead of ``models/formcheck_models/artifacts``.
    """
    names = ready_exercises(exercise, "training needs TensorFlow: run 'make train' (own venv with the 'train' extra)")
    if names is None:
        return 2
    try:
        for name in names:
            started = time.monotonic()
            prep = prepare(name, LabelRules(), config_for(name))
            path, max_diff = train_final(prep, out_dir, TrainConfig())
            copies = 0 if prep.augmented is None else len(prep.augmented)
            print(f"{name}: trained on {len(prep.frames)} frames (+{copies} augmented) of {len(prep.clips)} clip(s) in "
                  f"{time.monotonic() - started:.0f} s; TFLite matches Keras within {max_diff:.1e}\n  model: {path}")
    except DataMissingError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0
