"""Per-frame fault flags from body measures (rules, so a trainer can read and tune them)."""

from __future__ import annotations

from edge_node.config import FaultSection
from protocol.messages import Exercise, Fault, Phase

_MOVING: frozenset[Phase] = frozenset({"descending", "bottom", "ascending"})


def frame_faults(exercise: Exercise, phase: Phase, angles: dict[str, float], rules: FaultSection) -> list[Fault]:
    """Faults visible in one frame. Only squat rules exist so far; other exercises report none."""
    if exercise != "squat" or phase not in _MOVING or angles.get("knee", 180.0) > rules.bending_knee_deg:
        return []
    faults: list[Fault] = []
    if angles["knee_width"] < rules.knees_in_width_ratio:
        faults.append("knees_in")
    if angles["trunk_lean"] > rules.forward_lean_deg:
        faults.append("forward_lean")
    if angles["heel_lift"] > rules.heels_up_ratio:
        faults.append("heels_up")
    return faults
