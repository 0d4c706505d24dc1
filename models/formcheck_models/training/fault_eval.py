"""Faults judged per rep against the data set's per-rep form labels, on reps counted held out.

Each clip's reps are counted and graded by the live station logic (:func:`formcheck_edge.analyze.analyze_frames`)
with the rep settings chosen without the clip's source (:mod:`formcheck_models.training.rep_selection`). A counted
rep is
matched to the labelled rep whose bottom frame lies inside it; its label (``form`` column of ground_truth.csv,
one per complete rep) says which faults it has. The fault rules and grading thresholds are fixed coaching
values, never chosen on these clips, so no other selection is involved.

Per exercise and fault: reps flagged and labelled (true positives), flagged but labelled without it (false
positives), labelled but not flagged (false negatives), with precision and recall and the number of reps
behind them. Reps labelled ``unclear`` are left out; labelled reps the counter missed are counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from formcheck_edge.analyze import analyze_frames
from formcheck_models.training.rep_selection import HeldOut, config_for
from formcheck_protocol.messages import Exercise, Fault

JUDGED: Final[dict[Exercise, tuple[Fault, ...]]] = {
    "squat": ("knees_in", "forward_lean", "shallow"),
    "lunge": ("shallow",),
    "pushup": ("hips_sag", "hips_pike", "shallow"),
    "curl": ("swinging", "partial_range"),
}
"""Faults the product flags per exercise that the data set's labels can confirm or refute (it labels
``knee_over_toes`` and ``too_deep`` too, which the product does not flag: they are listed as not judged)."""


@dataclass
class FaultCounts:
    exercise: Exercise
    fault: Fault
    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    reps: int = 0
    """Labelled, judgeable reps matched to a counted rep (the denominator behind both figures)."""

    @property
    def labelled(self) -> int:
        return self.true_positive + self.false_negative

    @property
    def precision(self) -> float | None:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positive / self.labelled if self.labelled else None


@dataclass
class FaultReport:
    counts: list[FaultCounts]
    unmatched_labelled: int
    """Labelled (judgeable) reps no counted rep contained."""
    unclear: int
    unjudged_labels: dict[str, int]


def evaluate_faults(results: Sequence[HeldOut]) -> FaultReport:
    counts = {(ex, fault): FaultCounts(ex, fault) for ex, faults in JUDGED.items() for fault in faults}
    unmatched = unclear = 0
    unjudged: dict[str, int] = {}
    for held in results:
        clip = held.clip
        config = config_for(held.setting, {clip.exercise: held.floor})
        analysis = analyze_frames(clip.frames, clip.name, clip.exercise, rep_config=config)
        for bottom, form in zip(clip.bottoms, clip.forms, strict=False):
            names = set(form.split("+"))
            if "unclear" in names:
                unclear += 1
                continue
            for name in names - {"good"} - set(JUDGED[clip.exercise]):
                unjudged[name] = unjudged.get(name, 0) + 1
            rep = next((r for r in analysis.reps if r.start_seq <= bottom <= r.end_seq), None)
            if rep is None:
                unmatched += 1
                continue
            for fault in JUDGED[clip.exercise]:
                c = counts[clip.exercise, fault]
                c.reps += 1
                flagged, labelled = fault in rep.faults, fault in names
                c.true_positive += flagged and labelled
                c.false_positive += flagged and not labelled
                c.false_negative += labelled and not flagged
    return FaultReport(list(counts.values()), unmatched, unclear, unjudged)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def fault_lines(report: FaultReport) -> list[str]:
    """The report section: one row per exercise and fault."""
    lines = ["| exercise | fault | reps judged | labelled | flagged and labelled | flagged, not labelled | "
             "labelled, not flagged | precision | recall |", "|---|---|---|---|---|---|---|---|---|"]
    for c in report.counts:
        lines.append(f"| {c.exercise} | `{c.fault}` | {c.reps} | {c.labelled} | {c.true_positive} | "
                     f"{c.false_positive} | {c.false_negative} | {_share(c.precision)} | {_share(c.recall)} |")
    lines += ["", f"Left out: {report.unclear} reps labelled `unclear`; {report.unmatched_labelled} labelled reps that "
              "no counted rep contained. Labels the product does not flag: "
              + (", ".join(f"`{k}` {v}" for k, v in sorted(report.unjudged_labels.items())) or "none") + "."]
    return lines
