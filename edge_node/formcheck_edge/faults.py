"""Per-frame fault flags from body measures (rules, so a trainer can read and tune them)."""

from __future__ import annotations

from formcheck_edge.config import FaultSection
from formcheck_protocol.messages import Exercise, Fault, Phase

_MOVING: frozenset[Phase] = frozenset({"descending", "bottom", "ascending"})


def frame_faults(exercise: Exercise, phase: Phase, angles: dict[str, float], rules: FaultSection) -> list[Fault]:
    """Faults visible in one frame of ``exercise`` (only while moving: standing still is never a fault).

    Rep-level faults (``shallow``, ``partial_range``) need the whole rep and are
    judged by the aggregator's grading, not here.
    """
    if phase not in _MOVING:
        return []
    if exercise in ("squat", "lunge"):
        return _squat_faults(angles, rules)
    if exercise == "pushup":
        return _pushup_faults(angles, rules)
    if exercise == "curl":
        return _curl_faults(angles, rules)
    return []


def _squat_faults(angles: dict[str, float], rules: FaultSection) -> list[Fault]:
    """Knees caving in (front/rear view only) and chest dropping forward, once the knees bend.

    There is deliberately no per-frame ``heels_up`` rule: world landmarks are
    camera-aligned, not gravity-aligned, so heel height against the toes
    changes with camera pitch and flagged every rep of good deep squats.
    Heel lift needs a per-station standing baseline, which the aggregator has.
    """
    if angles.get("knee", 180.0) > rules.bending_knee_deg:
        return []
    faults: list[Fault] = []
    # Knee width is only measurable when the camera sees the hips side by side; a lean toward or away from a
    # camera in front is along its axis, a depth guess, so the trunk is judged from anywhere else.
    frontal = _frontal(angles, rules)
    if frontal and angles["knee_width"] < rules.knees_in_width_ratio:
        faults.append("knees_in")
    if not frontal and angles["trunk_lean"] > rules.forward_lean_deg:
        faults.append("forward_lean")
    return faults


def _frontal(angles: dict[str, float], rules: FaultSection) -> bool:
    """The camera faces the person's front or back (a frame without a yaw is not taken as frontal)."""
    return angles.get("view_yaw", 90.0) <= rules.frontal_view_max_deg


def _pushup_faults(angles: dict[str, float], rules: FaultSection) -> list[Fault]:
    """Hips sagging toward the floor or piking up, off the shoulder-ankle line (``hip_sag``, signed)."""
    sag = angles.get("hip_sag")
    if sag is None or angles.get("view_yaw", 0.0) < rules.side_view_min_deg:
        return []
    if sag > rules.hips_sag_deg:
        return ["hips_sag"]
    if -sag > rules.hips_pike_deg:
        return ["hips_pike"]
    return []


def _curl_faults(angles: dict[str, float], rules: FaultSection) -> list[Fault]:
    """Swinging: the trunk leaves the vertical (leaning back to heave the weight up), seen from beside or obliquely."""
    if not _frontal(angles, rules) and angles.get("trunk_lean", 0.0) > rules.swing_lean_deg:
        return ["swinging"]
    return []
