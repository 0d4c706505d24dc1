"""``formcheck analyze``'s camera advice from the frames alone (synthetic frames, no video, no model)."""

from __future__ import annotations

from formcheck_edge.analyze import analyze_frames
from formcheck_protocol.messages import Exercise, FrameMessage
from tests.unit.synthetic_frames import exercise_stream


def _advice(exercise: Exercise, ankle_vis: float | None) -> list[str]:
    frames = exercise_stream(exercise)
    if ankle_vis is not None:
        frames = [f.model_copy(update={"angles": {**f.angles, "ankle_vis": ankle_vis}}) for f in frames]
    return analyze_frames(_as(frames, exercise), "clip.mp4", exercise).placement_advice()


def _as(frames: list[FrameMessage], exercise: Exercise) -> list[FrameMessage]:
    return [f.model_copy(update={"exercise": exercise}) for f in frames]


def test_feet_out_of_the_picture_is_said_for_a_squat() -> None:
    advice = _advice("squat", 0.1)
    feet = [a for a in advice if "feet are not seen" in a]
    assert feet and "100%" in feet[0] and "depth and knees are guesses" in feet[0], advice


def test_feet_in_the_picture_or_not_measured_say_nothing_of_them() -> None:
    for ankle_vis in (0.9, None):  # None: frames of an edge from before the measure
        assert not [a for a in _advice("squat", ankle_vis) if "feet" in a]


def test_curls_and_push_ups_say_nothing_of_the_feet() -> None:
    """A curl does not need them; a push-up filmed head-on hides them behind the body."""
    for exercise in ("curl", "pushup"):
        assert not [a for a in _advice(exercise, 0.1) if "feet" in a]
