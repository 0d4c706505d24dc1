"""The edge's classify stage: observations in capture order in, every frame message out once, in order.

The stage is a thread beside the pose loop; these tests drive it with the gate's fake processor (no pose model, no
broker). The real pose loop and classify stage run together in tests/integration/test_edge_mqtt.py, whose frames must
equal the single-threaded offline path's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from formcheck_edge.classify_stage import ClassifyStage, SessionBox
from formcheck_edge.exercise_gate import ExerciseGate
from formcheck_edge.processor import Observation
from formcheck_protocol.messages import Exercise, FrameMessage, SessionMessage
from tests.unit.synthetic_frames import exercise_stream
from tests.unit.test_exercise_gate import FakeProcessor, nobody, shifted


@dataclass
class Versioned:
    version: str


class StageFake(FakeProcessor):
    """The gate's fake processor plus what the stage reads: the current classifier's version."""

    @property
    def classifier(self) -> Versioned:
        return Versioned(f"{self.exercise}_model@1")


@dataclass
class FakePublisher:
    published: list[FrameMessage] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue(self, frame: FrameMessage) -> None:
        with self.lock:
            self.published.append(frame)

    def update_status(self, **fields: Any) -> None:
        with self.lock:
            self.statuses.append(fields)


def observation(frame: FrameMessage) -> Observation:
    return Observation(seq=frame.seq, ts=frame.ts, pose=None, vis=frame.vis)


def started(processor: StageFake, sessions: SessionBox | None = None) -> tuple[ClassifyStage, FakePublisher]:
    publisher = FakePublisher()
    stage = ClassifyStage(processor, ExerciseGate(processor), sessions or SessionBox(), publisher)
    stage.start()
    return stage, publisher


def test_every_observation_is_published_once_in_capture_order() -> None:
    frames = exercise_stream("squat", reps=4)
    stage, publisher = started(StageFake(frames))
    for frame in frames:
        stage.submit(observation(frame))
    stage.close()
    stage.join(timeout=10)
    assert not stage.is_alive() and stage.error is None
    assert [f.seq for f in publisher.published] == [f.seq for f in frames]


def test_a_check_in_without_exercise_holds_frames_until_recognised_then_switches_the_model() -> None:
    frames = nobody(0, 10) + shifted(exercise_stream("curl", reps=3, lean=10.0), 10)
    processor = StageFake(frames)
    sessions = SessionBox()
    sessions.put(SessionMessage(member="m1", exercise=None))
    stage, publisher = started(processor, sessions)
    for frame in frames:
        stage.submit(observation(frame))
    stage.close()
    stage.join(timeout=10)
    assert stage.error is None
    assert [f.seq for f in publisher.published] == [f.seq for f in frames]
    assert {f.exercise for f in publisher.published[10:]} == {"curl"}
    assert {"exercise": "curl", "model": "curl_model@1"} in publisher.statuses


def test_frames_the_gate_still_holds_at_the_end_are_published() -> None:
    frames = exercise_stream("curl", reps=1, lean=10.0)[:20]  # stops before any rep is complete
    sessions = SessionBox()
    sessions.put(SessionMessage(member="m1", exercise=None))
    stage, publisher = started(StageFake(frames), sessions)
    for frame in frames:
        stage.submit(observation(frame))
    stage.close()
    stage.join(timeout=10)
    assert [f.seq for f in publisher.published] == [f.seq for f in frames]


class Broken(StageFake):
    def classify(self, seen: Observation) -> FrameMessage:
        if seen.seq == 5:
            raise ZeroDivisionError("a bug in the per-frame path")
        return super().classify(seen)


def test_a_failure_in_the_stage_is_raised_in_the_pose_loop_not_swallowed() -> None:
    frames = exercise_stream("squat", reps=2)
    stage, _ = started(Broken(frames))
    with pytest.raises(ZeroDivisionError, match="a bug in the per-frame path"):
        for frame in frames:
            stage.submit(observation(frame))
            stage.join(timeout=0.01)  # let the stage catch up, so the failure surfaces within this clip
    stage.close()
    stage.join(timeout=10)
    assert not stage.is_alive()


def test_the_model_switch_of_a_named_check_in_is_announced_once() -> None:
    frames = exercise_stream("pushup", reps=2, lean=80.0)
    processor = StageFake(frames, exercise="squat")
    sessions = SessionBox()
    named: Exercise = "pushup"
    sessions.put(SessionMessage(member="m1", exercise=named))
    stage, publisher = started(processor, sessions)
    for frame in frames:
        stage.submit(observation(frame))
    sessions.put(SessionMessage(member="m1", exercise=named))  # redelivered on reconnect
    stage.close()
    stage.join(timeout=10)
    assert publisher.statuses == [{"exercise": "pushup", "model": "pushup_model@1"}]
    assert {f.exercise for f in publisher.published} == {"pushup"}
