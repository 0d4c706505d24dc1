from __future__ import annotations

from formcheck_edge.config import FaultSection
from formcheck_edge.faults import frame_faults

RULES = FaultSection()
NEUTRAL = {"knee": 100.0, "knee_width": 1.1, "trunk_lean": 30.0, "heel_lift": 0.0, "view_yaw": 5.0}


def test_no_faults_for_clean_frame_or_standing() -> None:
    assert frame_faults("squat", "bottom", NEUTRAL, RULES) == []
    caved = {**NEUTRAL, "knee_width": 0.5}
    assert frame_faults("squat", "standing", caved, RULES) == []
    assert frame_faults("squat", "descending", {**caved, "knee": 170.0}, RULES) == []


def test_each_rule_fires_on_its_own() -> None:
    assert frame_faults("squat", "bottom", {**NEUTRAL, "knee_width": 0.6}, RULES) == ["knees_in"]
    oblique = {**NEUTRAL, "view_yaw": 45.0}
    assert frame_faults("squat", "ascending", {**oblique, "trunk_lean": 70.0}, RULES) == ["forward_lean"]
    assert frame_faults("squat", "descending", {**oblique, "knee_width": 0.6}, RULES) == []


def test_the_trunk_lean_is_not_judged_from_the_front() -> None:
    """Head-on, a lean toward or away from the camera is along its axis: a depth guess, not a measure."""
    leaning = {**NEUTRAL, "trunk_lean": 70.0}
    assert frame_faults("squat", "bottom", leaning, RULES) == []
    assert frame_faults("squat", "bottom", {**leaning, "view_yaw": 80.0}, RULES) == ["forward_lean"]
    swinging = {"trunk_lean": RULES.swing_lean_deg + 10}
    assert frame_faults("curl", "ascending", {**swinging, "view_yaw": 5.0}, RULES) == []
    assert frame_faults("curl", "ascending", {**swinging, "view_yaw": 60.0}, RULES) == ["swinging"]


def test_other_exercises_have_no_squat_rules() -> None:
    assert frame_faults("pushup", "bottom", {**NEUTRAL, "knee_width": 0.5}, RULES) == []


def test_knees_in_needs_a_frontal_view() -> None:
    side_on = {**NEUTRAL, "knee_width": 0.5, "view_yaw": 80.0}
    assert frame_faults("squat", "bottom", side_on, RULES) == []


def test_pushup_hips_sag_and_pike_from_the_side_only() -> None:
    side = {"hip_sag": 0.0, "view_yaw": 85.0}
    assert frame_faults("pushup", "bottom", side, RULES) == []
    assert frame_faults("pushup", "descending", {**side, "hip_sag": RULES.hips_sag_deg + 5}, RULES) == ["hips_sag"]
    assert frame_faults("pushup", "ascending", {**side, "hip_sag": -RULES.hips_pike_deg - 5}, RULES) == ["hips_pike"]
    head_on = {"hip_sag": -60.0, "view_yaw": 5.0}
    assert frame_faults("pushup", "bottom", head_on, RULES) == []
    assert frame_faults("pushup", "standing", {**side, "hip_sag": 40.0}, RULES) == []


def test_curl_swinging_when_the_trunk_leaves_vertical() -> None:
    assert frame_faults("curl", "ascending", {"trunk_lean": 5.0}, RULES) == []
    assert frame_faults("curl", "bottom", {"trunk_lean": RULES.swing_lean_deg + 1}, RULES) == ["swinging"]
    assert frame_faults("curl", "standing", {"trunk_lean": 40.0}, RULES) == []
