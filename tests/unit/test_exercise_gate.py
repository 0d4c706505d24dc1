"""The edge's exercise gate: a check-in without an exercise holds frames until the pose names it, loses none."""

from __future__ import annotations

import pytest

from formcheck_edge.exercise_gate import MAX_HELD_FRAMES, MAX_HELD_S, ExerciseGate
from formcheck_edge.processor import Observation
from formcheck_protocol.messages import Exercise, FrameMessage
from tests.unit.synthetic_frames import BOOT, FPS, NODE, TS0, exercise_stream


class FakeProcessor:
    """Classifies pre-made bodies by seq, labelled with the exercise it is set to; records what it classified.

    The gate only needs classify / switch_exercise / exercise, and its logic is what is tested here; the real
    processor runs behind it in tests/integration/test_exercise_recognition.py.
    """

    def __init__(self, bodies: list[FrameMessage], exercise: Exercise = "squat",
                 models: frozenset[Exercise] = frozenset({"squat", "pushup", "curl", "lunge"})) -> None:
        self.bodies = {b.seq: b for b in bodies}
        self._exercise: Exercise = exercise
        self.models = models
        self.classified: list[tuple[int, Exercise]] = []

    @property
    def exercise(self) -> Exercise:
        return self._exercise

    def classify(self, seen: Observation) -> FrameMessage:
        self.classified.append((seen.seq, self._exercise))
        return self.bodies[seen.seq].model_copy(update={"exercise": self._exercise})

    def switch_exercise(self, exercise: Exercise) -> bool:
        if exercise not in self.models:
            return False
        self._exercise = exercise
        return True


def nobody(seq0: int, n: int) -> list[FrameMessage]:
    return [FrameMessage(node=NODE, boot=BOOT, seq=seq0 + i, ts=TS0 + (seq0 + i) * 33, exercise="squat",
                         phase="no_person", form="good", bad_p=0.0, vis=0.0) for i in range(n)]


def run(gate: ExerciseGate, frames: list[FrameMessage]) -> tuple[list[FrameMessage], list[int]]:
    """Every frame through the gate; what was published and how many after each frame."""
    out: list[FrameMessage] = []
    per_frame = []
    for frame in frames:
        published = gate.submit(Observation(seq=frame.seq, ts=frame.ts, pose=None, vis=frame.vis))
        out += published
        per_frame.append(len(published))
    out += gate.finish()
    return out, per_frame


def shifted(frames: list[FrameMessage], by: int) -> list[FrameMessage]:
    return [f.model_copy(update={"seq": f.seq + by, "ts": f.ts + by * 33}) for f in frames]


@pytest.mark.parametrize("exercise", ["pushup", "curl", "lunge"])
def test_unnamed_check_in_publishes_every_frame_once_as_the_recognised_exercise(exercise: Exercise) -> None:
    frames = nobody(0, 20) + shifted(exercise_stream(exercise, reps=3, lean=80.0 if exercise == "pushup" else 10.0),
                                     20)
    processor = FakeProcessor(frames)
    gate = ExerciseGate(processor)
    gate.recognise()
    out, _ = run(gate, frames)
    assert [f.seq for f in out] == [f.seq for f in frames], "each frame once, in seq order"
    assert {f.exercise for f in out[20:]} == {exercise}
    assert {f.exercise for f in out[:20]} == {"squat"}, "nobody there yet: published at once, as they were"
    assert gate.recognition is not None and gate.recognition.exercise == exercise
    # The held frames were classified again with the recognised model, from the first frame with a person.
    reclassified = [seq for seq, ex in processor.classified if ex == exercise]
    assert reclassified[0] == 20


def test_frames_are_held_until_recognition_then_released_together() -> None:
    frames = exercise_stream("pushup", reps=3, lean=80.0)
    gate = ExerciseGate(FakeProcessor(frames))
    gate.recognise()
    _, per_frame = run(gate, frames)
    released_at = next(i for i, n in enumerate(per_frame) if n)
    assert per_frame[released_at] == released_at + 1, "everything held so far comes out at once"
    assert all(n == 1 for n in per_frame[released_at + 1:]), "then frame by frame"
    assert released_at <= round(4.0 * FPS), "recognised within the first rep (1 s standing + a 2 s rep)"


def test_named_check_in_keeps_its_exercise_and_counts_a_mismatch() -> None:
    frames = exercise_stream("curl", reps=3, lean=5.0)
    processor = FakeProcessor(frames)
    gate = ExerciseGate(processor)
    gate.watch("squat")
    out, per_frame = run(gate, frames)
    assert per_frame == [1] * len(frames), "a named check-in holds nothing back"
    assert {f.exercise for f in out} == {"squat"}
    assert gate.mismatches == 1
    again = shifted(frames, len(frames))
    processor.bodies.update({f.seq: f for f in again})
    gate.watch("curl")
    run(gate, again)
    assert gate.mismatches == 1, "the next check-in named what the member did"


def test_named_check_in_that_matches_counts_nothing() -> None:
    frames = exercise_stream("squat", reps=3)
    gate = ExerciseGate(FakeProcessor(frames))
    gate.watch("squat")
    run(gate, frames)
    assert gate.mismatches == 0


def test_recognised_exercise_without_a_model_publishes_the_frames_as_they_were() -> None:
    frames = exercise_stream("curl", reps=3, lean=5.0)
    processor = FakeProcessor(frames, models=frozenset({"squat"}))
    gate = ExerciseGate(processor)
    gate.recognise()
    out, _ = run(gate, frames)
    assert [f.seq for f in out] == [f.seq for f in frames]
    assert {f.exercise for f in out} == {"squat"}


def test_checkout_releases_the_held_frames() -> None:
    frames = exercise_stream("squat", reps=1, stand_s=1.0)[:45]  # standing, then half way down: undecided
    gate = ExerciseGate(FakeProcessor(frames))
    gate.recognise()
    published = [m for f in frames for m in gate.submit(Observation(seq=f.seq, ts=f.ts, pose=None, vis=0.9))]
    assert published == []
    released = gate.stop()
    assert [f.seq for f in released] == [f.seq for f in frames]
    assert not gate.recognising


def test_held_frames_are_bounded() -> None:
    standing = exercise_stream("squat", reps=0, stand_s=(MAX_HELD_FRAMES + 30) / FPS)
    away = nobody(0, MAX_HELD_FRAMES + 30)
    frames = standing[:10] + shifted(away, 10)  # a person for a moment, then nobody for over a minute
    gate = ExerciseGate(FakeProcessor(frames))
    gate.recognise()
    _, per_frame = run(gate, frames)
    held = 0
    most = 0
    for n in per_frame:
        held = held + 1 - n
        most = max(most, held)
    assert most <= MAX_HELD_FRAMES


def test_held_frames_are_bounded_in_time_at_a_pis_frame_rate() -> None:
    """At 3 frames/s the frame bound alone would hold ten minutes: capture time releases them after a minute."""
    seen = exercise_stream("squat", reps=0, stand_s=1.0)[::10]
    frames = [f.model_copy(update={"seq": i, "ts": TS0 + i * 333}) for i, f in enumerate(seen)]
    frames += [f.model_copy(update={"ts": TS0 + f.seq * 333}) for f in nobody(len(frames), 400)]
    gate = ExerciseGate(FakeProcessor(frames))
    gate.recognise()
    _, per_frame = run(gate, frames)
    released_at = next(i for i, n in enumerate(per_frame) if n > 0)
    assert (frames[released_at].ts - frames[0].ts) / 1000 == pytest.approx(MAX_HELD_S, abs=0.5)
    assert per_frame[released_at] == released_at + 1 < MAX_HELD_FRAMES
