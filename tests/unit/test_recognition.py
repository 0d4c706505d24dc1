"""Exercise recognition from synthetic pose streams: what moves, and how the body is held, names the exercise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from formcheck_aggregator.recognition import ExerciseRecogniser, RecognitionConfig, recognise, recognise_each
from formcheck_protocol.messages import Exercise, FrameMessage
from tests.unit.synthetic_frames import BOOT, FPS, NODE, TS0, exercise_stream


@pytest.mark.parametrize(("exercise", "lean"), [("squat", 10.0), ("lunge", 10.0), ("curl", 5.0), ("pushup", 80.0)])
def test_each_exercise_is_recognised(exercise: Exercise, lean: float) -> None:
    result = recognise(exercise_stream(exercise, lean=lean))
    assert result is not None
    assert result.exercise == exercise, result.reason
    assert 0.5 <= result.confidence <= 1.0
    assert result.reason


def test_a_squat_is_named_within_its_first_rep() -> None:
    frames = exercise_stream("squat", reps=3)
    recogniser = ExerciseRecogniser()
    decided_at = next(i for i, f in enumerate(frames) if recogniser.push(f) is not None)
    first_rep_ends = round(1.0 * FPS) + round(2.0 * FPS)
    assert decided_at <= first_rep_ends + FPS, f"decided at frame {decided_at}, first rep ends at {first_rep_ends}"


def test_one_arm_movement_is_not_yet_a_curl() -> None:
    """Taking the bar is one arm movement: a curl is named at the second."""
    recogniser = ExerciseRecogniser()
    frames = exercise_stream("curl", reps=2)
    decisions = [recogniser.push(f) for f in frames]
    first = next(i for i, d in enumerate(decisions) if d is not None)
    assert first > round(3.0 * FPS), "named a curl after one arm movement"
    assert decisions[-1] is not None and decisions[-1].exercise == "curl"


def test_the_lean_threshold_decides_pushup() -> None:
    frames = exercise_stream("pushup", lean=55.0)
    got = recognise(frames, RecognitionConfig(horizontal_lean_deg=50.0))
    assert got is not None and got.exercise == "pushup"
    got = recognise(frames, RecognitionConfig(horizontal_lean_deg=60.0))
    assert got is not None and got.exercise != "pushup"


def test_a_closer_call_is_less_sure() -> None:
    clear = recognise(exercise_stream("pushup", lean=85.0))
    close = recognise(exercise_stream("pushup", lean=52.0))
    assert clear is not None and close is not None
    assert clear.confidence > close.confidence


@pytest.mark.parametrize("every", [1, 10])
def test_standing_still_is_named_at_the_time_limit_and_not_sure(every: int) -> None:
    """The limit is capture time, not frames: a Pi's 3 frames/s waits as long as 30."""
    frames = exercise_stream("squat", reps=0, stand_s=40.0)[::every]
    recogniser = ExerciseRecogniser(RecognitionConfig(max_s=10.0))
    decisions = [recogniser.push(f) for f in frames]
    first = next(i for i, d in enumerate(decisions) if d is not None)
    assert (frames[first].ts - frames[0].ts) / 1000 == pytest.approx(10.0, abs=0.05)
    result = decisions[first]
    assert result is not None and result.confidence <= 0.5 and "no rep" in result.reason
    assert result.after_s == pytest.approx(10.0, abs=0.05)


def test_nobody_seen_is_no_recognition() -> None:
    empty = [FrameMessage(node=NODE, boot=BOOT, seq=i, ts=TS0 + i * 33, exercise="squat", phase="no_person",
                          form="good", bad_p=0.0, vis=0.0) for i in range(100)]
    assert recognise(empty) is None
    assert recognise([]) is None


def _with(frames: list[FrameMessage], change: Callable[[dict[str, float]], dict[str, float]]) -> list[FrameMessage]:
    return [f.model_copy(update={"angles": {**f.angles, **change(f.angles)}}) for f in frames]


def test_a_front_view_squat_with_moving_arms_is_a_squat() -> None:
    """From the front the hips travel little in 3D while the knees bend fully; the arms swing with each rep."""
    def front(angles: dict[str, float]) -> dict[str, float]:
        t = (170.0 - angles["knee"]) / 100.0  # 0 standing, 1 at the bottom
        return {"hip_depth": -1.0 + 0.2 * t, "elbow_l": 165.0 - 60.0 * t}

    result = recognise(_with(exercise_stream("squat"), front))
    assert result is not None and result.exercise == "squat", result.reason


def test_arm_movements_lifting_the_wrists_above_the_neck_are_not_curls() -> None:
    """Racking a bar on the back or pressing it overhead bends the elbows like a curl but lifts the wrists high."""
    def overhead(angles: dict[str, float]) -> dict[str, float]:
        t = (165.0 - angles["elbow_l"]) / 125.0
        return {"shoulder_height": 0.2 - 0.7 * t}

    frames = _with(exercise_stream("curl"), overhead)
    result = recognise(frames)
    assert result is not None and result.exercise != "curl", result.reason
    # the threshold is what decides: allowing the wrists a whole torso length above the neck names a curl
    lenient = recognise(frames, RecognitionConfig(curl_wrists_above_neck=1.0))
    assert lenient is not None and lenient.exercise == "curl"


def test_hips_that_differ_but_both_bend_at_the_bottom_are_a_squat() -> None:
    """A far leg the pose puts wrongly makes a squat's hip angles differ; a lunge's rear hip is nearly straight."""
    def uneven(angles: dict[str, float]) -> dict[str, float]:
        t = (170.0 - angles["knee"]) / 100.0
        return {"hip_l": 175.0 - 100.0 * t, "hip_r": 175.0 - 150.0 * t}  # 50° apart, 75° and 25° at the bottom

    frames = _with(exercise_stream("squat"), uneven)
    result = recognise(frames)
    assert result is not None and result.exercise == "squat", result.reason
    assert "both bent at the bottom" in result.reason
    # the threshold is what decides: a rear hip of 70° counting as open names a lunge
    lenient = recognise(frames, RecognitionConfig(lunge_rear_hip_deg=70.0))
    assert lenient is not None and lenient.exercise == "lunge", lenient.reason


def test_arm_movements_with_the_upper_arms_away_from_the_trunk_are_not_curls() -> None:
    """A curl bends the elbow with the upper arm by the trunk; holding a bar on the back spreads the elbows."""
    frames = _with(exercise_stream("curl"), lambda angles: {"shoulder": 70.0})
    result = recognise(frames)
    assert result is not None and result.exercise != "curl", result.reason
    lenient = recognise(frames, RecognitionConfig(curl_upper_arm_deg=80.0))
    assert lenient is not None and lenient.exercise == "curl", lenient.reason


def test_frames_without_the_upper_arm_measure_are_judged_by_the_wrists_alone() -> None:
    """An edge from before the ``shoulder`` measure: its curls are still curls."""
    frames = [f.model_copy(update={"angles": {k: v for k, v in f.angles.items() if k != "shoulder"}})
              for f in exercise_stream("curl")]
    result = recognise(frames)
    assert result is not None and result.exercise == "curl", result.reason


def test_legs_guessed_without_the_feet_in_the_picture_do_not_name_a_squat() -> None:
    """A camera framing a curl from the waist up: the pose model invents bending knees (a freeze-frame, a moving
    camera); with the ankles unseen the legs count as still, and the arms name the curl."""
    def guessed_legs(angles: dict[str, float]) -> dict[str, float]:
        t = (165.0 - angles["elbow_l"]) / 125.0
        return {"knee": 170.0 - 90.0 * t, "hip_depth": -1.0 + 1.0 * t, "ankle_vis": 0.1}

    frames = _with(exercise_stream("curl"), guessed_legs)
    result = recognise(frames)
    assert result is not None and result.exercise == "curl", result.reason
    # the same legs with the feet seen are a movement of the hips
    seen = recognise(_with(frames, lambda angles: {"ankle_vis": 0.9}))
    assert seen is not None and seen.exercise == "squat", seen.reason


def test_a_squat_without_the_feet_in_the_picture_is_named_at_its_second_rep() -> None:
    """The legs' angles are guesses without the feet, but two movements of the hips in a row are the legs'."""
    frames = _with(exercise_stream("squat", reps=3), lambda angles: {"ankle_vis": 0.1})
    recogniser = ExerciseRecogniser()
    decided_at = next(i for i, f in enumerate(frames) if recogniser.push(f) is not None)
    assert recogniser.result is not None and recogniser.result.exercise == "squat", recogniser.result
    second_rep_ends = 3 * FPS + 2 * 2 * FPS  # three 1 s stands and two 2 s reps
    assert second_rep_ends - FPS <= decided_at <= second_rep_ends + FPS, decided_at


@pytest.mark.parametrize("exercise", ["squat", "lunge", "curl", "pushup"])
def test_every_threshold_tried_at_once_names_what_each_alone_does(exercise: Exercise) -> None:
    """The evaluation runs the detectors once for all candidate thresholds: same answers as one at a time."""
    streams = [exercise_stream(exercise, lean=55.0), exercise_stream(exercise, reps=1)[:70],
               exercise_stream(exercise, reps=0, stand_s=12.0)]
    configs = [RecognitionConfig(max_s=10.0), RecognitionConfig(max_s=10.0, horizontal_lean_deg=50.0),
               RecognitionConfig(max_s=10.0, lunge_hip_difference_deg=100.0, curl_upper_arm_deg=10.0)]
    for frames in streams:
        assert recognise_each(frames, configs) == [recognise(frames, c) for c in configs]
    with pytest.raises(ValueError, match="max_s"):
        recognise_each(streams[0], [RecognitionConfig(max_s=10.0), RecognitionConfig(max_s=20.0)])
