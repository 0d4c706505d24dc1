"""Markdown report of a training run: data, derived labels, held-out quality, as measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from formcheck_models.training.history import HISTORY, NOTES, PastRun
from formcheck_models.training.metrics import Scores
from formcheck_models.training.rep_eval import BOTTOM_TOLERANCE, ClipRepCount, RepCountTotals


@dataclass(frozen=True)
class ClipSummary:
    """Frame and label counts of one clip."""

    name: str
    group: str
    view: str
    frames: int
    with_person: int
    phase_counts: tuple[int, ...]
    good: int
    bad: int
    reps: int
    partial_reps_labelled: int


@dataclass(frozen=True)
class GroupResult:
    """Held-out quality on one left-out group."""

    group: str
    clips: tuple[str, ...]
    phase: Scores
    form: Scores


@dataclass(frozen=True)
class RunSummary:
    """Everything the report states about one training run."""

    exercise: str
    data_fingerprint: str
    data_files: tuple[str, ...]
    pose_model: str
    feature_spec: str
    label_rules: str
    evaluation_method: str
    train_config: str
    bad_threshold: float
    clips: tuple[ClipSummary, ...]
    phase_labels: tuple[str, ...]
    pooled_phase: Scores
    pooled_form: Scores
    baseline_phase: Scores
    baseline_form: Scores
    groups: tuple[GroupResult, ...]
    fault_groups: tuple[tuple[str, tuple[str, ...]], ...]
    model_path: str
    model_sha256: str
    rep_counts: tuple[ClipRepCount, ...] = ()
    model_version: str = ""
    model_change: str = ""
    """What this model changed against the last row of ``formcheck_models.training.history.HISTORY``."""
    rule_phase: Scores | None = None
    rule_form: Scores | None = None
    form_auc: float | None = None
    figures: tuple[tuple[str, str], ...] = ()
    """(caption, path relative to the report) of each saved figure."""
    variants: tuple[PastRun, ...] = ()
    """Other settings measured in this run on the same folds (not shipped, chose nothing)."""


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def _per_class(scores: Scores) -> list[str]:
    rows = [
        (label, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}", s.support)
        for label, s in zip(scores.labels, scores.per_class(), strict=True)
    ]
    return _table(("class", "precision", "recall", "F1", "frames"), rows)


def _confusion(scores: Scores) -> list[str]:
    rows = [(f"**{label}**", *scores.confusion[i].tolist()) for i, label in enumerate(scores.labels)]
    return _table(("true \\ predicted", *scores.labels), rows)


def _headline(name: str, scores: Scores, baseline: Scores) -> tuple[object, ...]:
    return (name, scores.frames, f"{scores.accuracy:.3f}", f"{scores.macro_f1:.3f}",
            f"{baseline.accuracy:.3f}", f"{baseline.macro_f1:.3f}")


def _fault_note(run: RunSummary) -> str:
    listed = "; ".join(f"{group}: {', '.join(faults)}" for group, faults in run.fault_groups) or "none"
    return (f"Bad-form frames come from {len(run.fault_groups)} of {len(run.groups)} groups ({listed}). "
            "A fold that holds one of them out learns `bad` only from the other groups' faults, so the form "
            "numbers measure whether a fault transfers to an unseen person and fault type.")


def _signed(values: Sequence[int]) -> str:
    return " ".join(f"{v:+d}" for v in values) or "-"


def _bottoms(r: ClipRepCount) -> str:
    """Labelled bottom frames, each with the counted rep's bottom or ``missed``."""
    parts = [f"{b}→{r.counted_bottoms[m]}" if m is not None else f"{b}→missed"
             for b, m in zip(r.labelled_bottoms, r.matched, strict=True)]
    extra = [str(b) for i, b in enumerate(r.counted_bottoms) if i not in r.matched]
    return ", ".join(parts + [f"extra {b}" for b in extra]) or "-"


def _rep_counting(run: RunSummary) -> list[str]:
    if not run.rep_counts:
        return []
    t = RepCountTotals.of(run.rep_counts)
    bottom = (f"mean {t.bottom_mean_abs:.1f}, median {t.bottom_median_abs:.1f}, max {t.bottom_max_abs} frames; "
              f"{t.bottom_within_tolerance} of {t.matched} within ±{BOTTOM_TOLERANCE}"
              if t.bottom_mean_abs is not None else "no counted rep matched a labelled one")
    rows = [
        (r.clip, r.group, r.view, r.expected, f"**{r.counted}**" if r.count_error else r.counted,
         r.partial_expected, r.partial_counted, _bottoms(r), _signed(r.bottom_errors),
         " ".join(r.forms) or "-", " ".join(r.verdicts) or "-",
         ("yes" if r.labelled_fault else "no") + " / " + ("yes" if r.flagged_bad else "no"))
        for r in run.rep_counts
    ]
    return [
        "## Rep counting on held-out predictions",
        "",
        "Each clip's frames are classified by the cross-validation fold model that did not train on its group "
        "(the models scored above), for every frame of the clip in order, including frames excluded from the "
        "losses. The outputs become frame messages exactly as "
        "`edge_node/formcheck_edge/processor.py` builds them (`no_person` "
        "below the default lower-body visibility, argmax phase, rounded probabilities, form from the "
        f"threshold {run.bad_threshold}, default fault rules, published angles; seq = frame index, capture time "
        "at the clip's fps) and go through `formcheck_aggregator.station.Station` (every frame, then flush), as in "
        "`formcheck analyze`. Poses come from the training pose cache. Unlike `formcheck analyze` with the "
        "shipped model, the classifier never saw these people, so these counts measure the rep counter on new "
        "people. A labelled rep is matched to the counted rep whose frames contain its bottom frame; bottom "
        "error = counted rep's bottom frame (`bottom_seq`) − labelled bottom frame (labels are ±5 frames, ±10 "
        "for paused reps and moving cameras).",
        "",
        *_table(("measure", "value"), [
            ("clips counted exactly", f"{t.exact} / {t.clips}"),
            ("mean absolute count error (reps per clip)", f"{t.mean_abs_count_error:.2f}"),
            ("complete reps counted / expected", f"{t.counted} / {t.expected} ({t.matched} matched to a labelled rep)"),
            ("partial reps counted / expected", f"{t.partial_counted} / {t.partial_expected}"),
            ("bottom frame error, matched reps (absolute)", bottom),
            ("clips labelled with a fault with a `bad` rep", f"{t.fault_clips_flagged} / {t.fault_clips}"),
            ("other clips with a `bad` rep (false alarms)", f"{t.other_clips_flagged} / {t.other_clips}"),
            ("matched fault reps judged `bad`", f"{t.fault_reps_bad} / {t.fault_reps}"),
            ("matched good reps judged `bad`", f"{t.good_reps_bad} / {t.good_reps}"),
        ]),
        "",
        *_table(("clip", "group", "view", "reps expected", "counted", "partial expected", "partial counted",
                 "bottom: labelled→counted", "bottom error", "form labels", "verdicts",
                 "fault labelled / flagged bad"), rows),
        "",
    ]


PHASE_TARGET = 0.95
FORM_TARGET = 0.90


def _targets(run: RunSummary) -> list[str]:
    auc = f"{run.form_auc:.3f}" if run.form_auc is not None else "n/a (no bad-form frame in the data)"
    phase, form = run.pooled_phase.macro_f1, run.pooled_form.macro_f1
    form_present = sum(1 for c in run.pooled_form.per_class() if c.support > 0)

    def verdict(value: float, target: float) -> str:
        return "met" if value >= target else f"missed by {target - value:.3f}"

    form_verdict = (verdict(form, FORM_TARGET) if form_present == 2
                    else "not measurable: every labelled frame is good, so form macro-F1 is trivially 1")
    return _table(("target (held-out)", "measured", "verdict"), [
        (f"phase macro-F1 >= {PHASE_TARGET}", f"{phase:.3f}", verdict(phase, PHASE_TARGET)),
        (f"form macro-F1 >= {FORM_TARGET}", f"{form:.3f}", form_verdict),
        ("form ROC AUC (bad_p)", auc, "-"),
    ])


def _rules(run: RunSummary) -> list[str]:
    if run.rule_phase is None or run.rule_form is None:
        return []
    return [
        "### Rule-only baseline (same frames)",
        "",
        *_table(("head", "frames", "accuracy", "macro-F1", "model macro-F1"),
                [("phase", run.rule_phase.frames, f"{run.rule_phase.accuracy:.3f}", f"{run.rule_phase.macro_f1:.3f}",
                  f"{run.pooled_phase.macro_f1:.3f}"),
                 ("form", run.rule_form.frames, f"{run.rule_form.accuracy:.3f}", f"{run.rule_form.macro_f1:.3f}",
                  f"{run.pooled_form.macro_f1:.3f}")]),
        "",
        *_per_class(run.rule_phase),
        "",
        *_confusion(run.rule_phase),
        "",
        *_per_class(run.rule_form),
        "",
    ]


def _changes(run: RunSummary) -> list[str]:
    """Earlier models' held-out figures next to this run's: what each change did."""
    form_present = sum(1 for c in run.pooled_form.per_class() if c.support > 0) == 2
    rows = [(p.model, p.change, p.phase_macro_f1, p.form_macro_f1, "yes" if p.kept else "no, measured only")
            for p in (*HISTORY.get(run.exercise, ()), *run.variants)]
    rows.append((f"{run.model_version} (this report)", run.model_change, f"**{run.pooled_phase.macro_f1:.3f}**",
                 f"**{run.pooled_form.macro_f1:.3f}**" if form_present else "-", "shipped"))
    return [
        "## Changes against earlier models (held-out macro-F1, same folds)",
        "",
        *_table(("model", "change", "phase macro-F1", "form macro-F1", "kept"), rows),
        "",
        *([NOTES[run.exercise], ""] if run.exercise in NOTES else []),
    ]


def _figures(run: RunSummary) -> list[str]:
    out: list[str] = []
    for caption, path in run.figures:
        out += [f"![{caption}]({path})", ""]
    return out


def render_report(run: RunSummary) -> str:
    """The report as markdown."""
    phase_totals = [sum(c.phase_counts[k] for c in run.clips) for k in range(len(run.phase_labels))]
    out = [
        f"# {run.exercise} phase/form classifier: training report",
        "",
        "Generated by `models/formcheck_models/training/train.py`; do not edit by hand, re-run training instead.",
        "",
        "`formcheck models train && formcheck models evaluate` reproduces this file, the figures and the model "
        "byte for byte from the same data (no time stamps, fixed seeds, deterministic TensorFlow ops).",
        "",
        f"- data set: `$FORMCHECK_DATA` ({len(run.clips)} clips or parts; {run.data_fingerprint})",
        f"- pose model: {run.pose_model}",
        f"- feature spec: {run.feature_spec}",
        f"- model: `{run.model_path}` (sha256 {run.model_sha256[:16]})",
        "",
        "## Held-out quality",
        "",
        run.evaluation_method,
        "",
        f"Form is `bad` when `bad_p >= {run.bad_threshold}`; the threshold is fixed, not tuned on any fold. "
        "Hyper-parameters were fixed before evaluation. The majority baseline predicts the most frequent class; "
        "the rule baseline (`models/formcheck_models/training/rule_baseline.py`) uses no learning at "
        "all: phase from the depth "
        "measure's level and speed, form from the edge's fault rules, on the same frames.",
        "",
        *_table(("head", "frames", "accuracy", "macro-F1", "majority accuracy", "majority macro-F1"),
                [_headline("phase", run.pooled_phase, run.baseline_phase),
                 _headline("form", run.pooled_form, run.baseline_form)]),
        "",
        *_targets(run),
        "",
        *_changes(run),
        *_rules(run),
        *_figures(run),
        "### Phase, per class (pooled held-out frames)",
        "",
        *_per_class(run.pooled_phase),
        "",
        *_confusion(run.pooled_phase),
        "",
        "### Form, per class (pooled held-out frames)",
        "",
        _fault_note(run),
        "",
        *_per_class(run.pooled_form),
        "",
        *_confusion(run.pooled_form),
        "",
        "### Per held-out group",
        "",
        *_table(
            ("group", "clips", "phase frames", "phase accuracy", "form frames", "form accuracy", "bad frames"),
            [(g.group, ", ".join(g.clips), g.phase.frames, f"{g.phase.accuracy:.3f}", g.form.frames,
              f"{g.form.accuracy:.3f}", int(g.form.confusion[1].sum())) for g in run.groups],
        ),
        "",
        *_rep_counting(run),
        "## Data and labels",
        "",
        "Frame counts per class (frames used for training; frames without a person and excluded frames are not "
        "counted in the class columns):",
        "",
        *_table(("", *run.phase_labels, "good", "bad"),
                [("all clips", *phase_totals, sum(c.good for c in run.clips), sum(c.bad for c in run.clips))]),
        "",
        *_table(
            ("clip", "group", "view", "frames", "with person", *run.phase_labels, "good", "bad", "reps",
             "partial reps labelled"),
            [(c.name, c.group, c.view, c.frames, c.with_person, *c.phase_counts, c.good, c.bad, c.reps,
              c.partial_reps_labelled) for c in run.clips],
        ),
        "",
        "### How the labels were derived",
        "",
        run.label_rules,
        "",
        "### Training",
        "",
        run.train_config,
        "",
        "### Data files",
        "",
        *[f"- `{path}`" for path in run.data_files],
        "",
    ]
    return "\n".join(out)
