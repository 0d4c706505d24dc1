"""Per-frame fault flags from body measures (rules, so a trainer can read and tune them)."""

from __future__ import annotations

from edge_node.config import FaultSection
from protocol.messages import Exercise, Fault, Phase

_MOVING: frozenset[Phase] = frozenset({"descending", "bottom", "ascending"})


def frame_faults(exercise: Exercise, phase: Phase, angles: dict[str, float], rules: FaultSection) -> list[Fault]:
    """Faults visible in one frame. Only squat rules exist so far; other exercises report none.

    There is deliberately no per-frame ``heels_up`` rule: world landmarks are
    camera-aligned, not gravity-aligned, so heel height against the toes
    changes with camera pitch and flagged every rep of good deep squats.
    Heel lift needs a per-station standing baseline, which the aggregator has.
    """
    if exercise != "squat" or phase not in _MOVING or angles.get("knee", 180.0) > rules.bending_knee_deg:
        return []
    faults: list[Fault] = []
    # Knee width is only measurable when the camera sees the hips side by side.
    if angles["knee_width"] < rules.knees_in_width_ratio and angles.get("view_yaw", 90.0) <= rules.frontal_view_max_deg:
        faults.append("knees_in")
    if angles["trunk_lean"] > rules.forward_lean_deg:
        faults.append("forward_lean")
    return faults
