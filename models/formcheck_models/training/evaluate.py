"""``formcheck models evaluate``: held-out quality of each exercise's classifier, written as a report.

Split by clip and person, never by frame (:func:`formcheck_models.training.train.cross_validate`):
every frame is predicted by a fold model that never saw that person (for an
exercise with one person only, that rep). Per class precision, recall, F1 and
the confusion matrix for phase and form, ROC AUC of ``bad_p`` for form, the
same scores for a majority-class and a rule-only baseline on the same frames,
held-out rep counting through the live station logic, two PNG figures and
``models/REPORT_<exercise>.md``. The committed model's manifest gets the
held-out figures.

Deterministic: fixed seeds, deterministic TensorFlow ops, no time stamps.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Final

import numpy as np

from formcheck_edge.classifier import MODEL_PHASES, ModelLoadError, PhaseFormClassifier, load_manifest
from formcheck_edge.features import FEATURE_SPEC_VERSION, MOTION_LAGS, feature_names, feature_spec_hash
from formcheck_models.training import labels as labelling
from formcheck_models.training.augment import NO_AUGMENTATION, AugmentConfig, config_for, describe
from formcheck_models.training.dataset import GROUND_TRUTH, data_files
from formcheck_models.training.history import PastRun
from formcheck_models.training.labels import IGNORE, LabelRules
from formcheck_models.training.metrics import Scores, roc_auc, score
from formcheck_models.training.plots import confusion_png, roc_png
from formcheck_models.training.rep_eval import RepCountTotals
from formcheck_models.training.report import GroupResult, RunSummary, render_report
from formcheck_models.training.rule_baseline import rule_bad, rule_phases
from formcheck_models.training.train import (
    BAD_THRESHOLD,
    FORM_LABELS,
    Predictions,
    Prepared,
    TrainConfig,
    _clip_summary,
    _deterministic_tf,
    _evaluation_method,
    _fault_groups,
    _held_out,
    build_augmented_set,
    cross_validate,
    head_scores,
    held_out_rep_counts,
    majority_baseline,
    model_path_for,
    prepare,
    ready_exercises,
    write_manifest,
)
from formcheck_runtime.paths import (
    POSE_MODEL,
    REPO_ROOT,
    REPORTS_DIR,
    DataMissingError,
    classifier_model,
    require_data_dir,
)

FIGURES_DIR: Final = "reports"

MEASURED_VARIANTS: Final[dict[str, tuple[tuple[str, str, AugmentConfig], ...]]] = {
    "lunge": (("this code, no augmentation", "the shipped protocol without augmented copies; same folds and seed",
               NO_AUGMENTATION),),
}
"""Per exercise, other training settings each report also measures on the same folds, beside the shipped one:
the before/after of a choice, computed in the same run (never used to choose: the protocol is fixed)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rule_scores(prep: Prepared) -> tuple[Scores, Scores]:
    """Rule-baseline scores on exactly the labelled frames the model is scored on."""
    phases, bads = [], []
    for c, clip in enumerate(prep.clips):
        keep = prep.frames.clip == c
        if not keep.any():
            continue
        lab = prep.frame_labels[c]
        kept = clip.features.present & ((lab.phase != IGNORE) | (lab.bad != IGNORE))
        phase = rule_phases(prep.exercise, clip.features.measures, clip.poses.fps)
        phases.append(phase[kept])
        bads.append(rule_bad(prep.exercise, clip.features.measures, phase)[kept])
    phase_pred = np.concatenate(phases)
    bad_pred = np.concatenate(bads)
    f = prep.frames
    # A frame the rules cannot judge (no depth measure) counts as standing / good: never dropped from the score.
    phase_pred = np.where(phase_pred == IGNORE, labelling.STANDING, phase_pred)
    bad_pred = np.where(bad_pred == IGNORE, 0, bad_pred)
    has_phase, has_form = f.phase != IGNORE, f.bad != IGNORE
    return (score(f.phase[has_phase], phase_pred[has_phase], MODEL_PHASES),
            score(f.bad[has_form], bad_pred[has_form], FORM_LABELS))


BEFORE: Final[dict[str, str]] = {"lunge": "squat"}
"""The committed model that served an exercise before it had one of its own (a lunge station ran the squat
model): scored on the same frames, it is the "before" of the exercise's first model. It never trained on them."""


def _before(prep: Prepared) -> tuple[PastRun, ...]:
    """The ``BEFORE`` model of the exercise on its labelled frames, as a row of the changes table."""
    other = BEFORE.get(prep.exercise)
    if other is None:
        return ()
    classifier = PhaseFormClassifier(classifier_model(other))
    outputs = [classifier.classify(vector) for vector in prep.frames.x]
    preds = Predictions(
        phase_p=np.array([[o.phase_p[p] for p in MODEL_PHASES] for o in outputs], dtype=np.float32),
        bad_p=np.array([o.bad_p for o in outputs], dtype=np.float32))
    phase, form = head_scores(prep.frames, preds)
    form_present = sum(1 for c in form.per_class() if c.support > 0) == 2
    return (PastRun(
        f"{classifier.version} (before: the {other} model ran for {prep.exercise})",
        f"the committed {other} classifier on the same {prep.exercise} frames (it never saw one); it judged "
        f"{1 - form.accuracy:.1%} of the {form.frames} form-labelled frames `bad`",
        f"{phase.macro_f1:.3f}", f"{form.macro_f1:.3f}" if form_present else "-", kept=True),)


def _variants(prep: Prepared, config: TrainConfig) -> tuple[PastRun, ...]:
    """Held-out macro-F1 of each of the exercise's ``MEASURED_VARIANTS`` on the same folds."""
    rows: list[PastRun] = []
    for name, change, augment in MEASURED_VARIANTS.get(prep.exercise, ()):
        augmented = build_augmented_set(prep.clips, prep.frame_labels, augment) if augment.copies else None
        cv = cross_validate(prep.frames, prep.groups, config, augmented=augmented)
        phase, form = head_scores(prep.frames, cv.frames)
        form_present = sum(1 for c in form.per_class() if c.support > 0) == 2
        rows.append(PastRun(name, change, f"{phase.macro_f1:.3f}", f"{form.macro_f1:.3f}" if form_present else "-",
                            kept=False))
    return tuple(rows)


def run_evaluation(
    exercise: str, out_dir: Path | None, config: TrainConfig, rules: LabelRules, augment: AugmentConfig
) -> RunSummary:
    """Cross-validate, score, plot; update the manifest's held-out figures; return the report's content."""
    data_dir = require_data_dir()
    model_path = model_path_for(exercise, out_dir)
    manifest = load_manifest(model_path) if model_path.is_file() else None
    if manifest is None:
        raise ModelLoadError(f"no {exercise} model at {model_path}: run 'formcheck models train' first")
    _deterministic_tf()
    prep = prepare(exercise, rules, augment)
    frames = prep.frames
    cv = cross_validate(frames, prep.groups, config, [c.features.vectors for c in prep.clips], prep.augmented)
    rep_counts = held_out_rep_counts(prep.exercise, prep.clips, prep.frame_labels, frames, cv)
    pooled_phase, pooled_form = head_scores(frames, cv.frames)
    baseline_phase, baseline_form = head_scores(frames, majority_baseline(frames))
    rule_phase, rule_form = _rule_scores(prep)
    has_form = frames.bad != IGNORE
    auc = roc_auc(frames.bad[has_form], cv.frames.bad_p[has_form])

    frame_group = np.array([prep.groups[c] for c in frames.clip])
    groups: list[GroupResult] = []
    for group in sorted(set(prep.groups)):
        phase_scores, form_scores = head_scores(frames, cv.frames, frame_group == group)
        members = tuple(c.truth.name for c in prep.clips if c.group == group)
        groups.append(GroupResult(group=group, clips=members, phase=phase_scores, form=form_scores))

    report_dir = out_dir or REPORTS_DIR
    figures: list[tuple[str, str]] = []
    confusion = report_dir / FIGURES_DIR / f"{exercise}_confusion.png"
    confusion_png(confusion, f"{exercise}: held-out frames", [
        ("phase, model", pooled_phase), ("phase, rules", rule_phase), ("form, model", pooled_form),
    ])
    figures.append(("Confusion matrices (held-out)", f"{FIGURES_DIR}/{confusion.name}"))
    if auc is not None:
        roc = report_dir / FIGURES_DIR / f"{exercise}_roc.png"
        fp = rule_form.confusion[0, 1] / max(1, int(rule_form.confusion[0].sum()))
        tp = rule_form.confusion[1, 1] / max(1, int(rule_form.confusion[1].sum()))
        roc_png(roc, f"{exercise}: form (bad) on held-out frames", frames.bad[has_form],
                cv.frames.bad_p[has_form], auc, (float(fp), float(tp)))
        figures.append(("ROC curve of bad_p (held-out)", f"{FIGURES_DIR}/{roc.name}"))

    method = _evaluation_method(prep.clips)
    augmented = 0 if prep.augmented is None else len(prep.augmented)
    scored = int(((frames.phase != IGNORE) | (frames.bad != IGNORE)).sum())
    write_manifest(model_path, manifest.model_copy(
        update={"held_out": _held_out(pooled_phase, pooled_form, scored, method)}))
    truth_sha = _sha256(data_dir / GROUND_TRUTH)[:16]
    return RunSummary(
        exercise=exercise,
        data_fingerprint=f"{GROUND_TRUTH} sha256 {truth_sha}",
        data_files=tuple(data_files(prep.clips)),
        pose_model=f"{POSE_MODEL.name} (sha256 {_sha256(POSE_MODEL)[:16]})",
        feature_spec=f"v{FEATURE_SPEC_VERSION} / {feature_spec_hash()}, {len(feature_names())} inputs",
        label_rules=f"{(labelling.__doc__ or '').strip()}\n\nNumbers used: `{rules}`.",
        evaluation_method=method,
        train_config=(f"`{config}`; phase and form losses weighted per class (n / (k · n_class) on each "
                      "training fold); frames whose label is excluded get weight 0 for that head. "
                      f"{config.epochs} epochs, no early stopping. Augmentation "
                      "(`models/formcheck_models/training/augment.py`, "
                      f"training folds only, copies of a held-out group's clips never train its fold): "
                      f"{describe(augment)} (`{augment}`); {augmented} augmented frames besides the "
                      f"{len(frames)} labelled ones."),
        bad_threshold=BAD_THRESHOLD,
        clips=tuple(_clip_summary(c, lab) for c, lab in zip(prep.clips, prep.frame_labels, strict=True)),
        phase_labels=MODEL_PHASES,
        pooled_phase=pooled_phase, pooled_form=pooled_form,
        baseline_phase=baseline_phase, baseline_form=baseline_form,
        groups=tuple(groups),
        fault_groups=_fault_groups(prep.clips),
        model_path=str(model_path.relative_to(REPO_ROOT) if model_path.is_relative_to(REPO_ROOT)
                       else model_path),
        model_sha256=_sha256(model_path),
        rep_counts=rep_counts,
        model_version=manifest.version,
        model_change=(f"motion at lags {', '.join(str(lag) for lag in MOTION_LAGS)} ({len(feature_names())} "
                      f"inputs); {describe(augment)}"),
        rule_phase=rule_phase, rule_form=rule_form, form_auc=auc, figures=tuple(figures),
        variants=(*_before(prep), *_variants(prep, config)),
    )


def _print_summary(run: RunSummary, report_path: Path, seconds: float) -> None:
    print(f"{run.exercise}: held-out ({len(run.groups)} leave-one-group-out folds, {len(run.clips)} clips/parts, "
          f"{seconds:.0f} s)")
    print(f"{'head':<6} {'frames':>7} {'accuracy':>9} {'macro-F1':>9} {'majority F1':>12} {'rules F1':>9}")
    for name, s, b, r in (("phase", run.pooled_phase, run.baseline_phase, run.rule_phase),
                          ("form", run.pooled_form, run.baseline_form, run.rule_form)):
        rule = f"{r.macro_f1:>9.3f}" if r is not None else f"{'-':>9}"
        print(f"{name:<6} {s.frames:>7} {s.accuracy:>9.3f} {s.macro_f1:>9.3f} {b.macro_f1:>12.3f} {rule}")
    print(f"form ROC AUC: {run.form_auc:.3f}" if run.form_auc is not None else "form ROC AUC: n/a (no bad frames)")
    print(RepCountTotals.of(run.rep_counts).one_line())
    print(f"report: {report_path}")


def evaluate_main(exercise: str = "all", out_dir: Path | None = None) -> int:
    """Evaluate ``exercise`` ('all': each in turn) and write its report; returns an exit code."""
    names = ready_exercises(exercise, "evaluation trains fold models and needs TensorFlow: run 'make train'")
    if names is None:
        return 2
    try:
        for name in names:
            started = time.monotonic()
            run = run_evaluation(name, out_dir, TrainConfig(), LabelRules(), config_for(name))
            report_path = (out_dir or REPORTS_DIR) / f"REPORT_{name}.md"
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(render_report(run))
            _print_summary(run, report_path, time.monotonic() - started)
    except (DataMissingError, ModelLoadError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0
