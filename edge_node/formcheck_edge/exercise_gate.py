"""Which exercise the node classifies when a check-in does not name one: recognised from the pose, no rep lost.

A station checked in without an exercise (a member who just starts) has frames classified by whatever model the node
last ran. The gate holds them back instead: it watches the pose (:mod:`formcheck_aggregator.recognition`), and once
the exercise is recognised, within the first rep, it switches to that exercise's classifier and classifies the held
frames again with it, in capture order. Every frame is published, each exactly once, in ``seq`` order, all with the
recognised exercise, so the aggregator counts the first rep like any other: only later by the time recognition took.

A check-in that names an exercise keeps it: the gate still watches, and a recognised exercise that differs is
logged once per check-in and counted (``NodeStats.exercise_mismatches``), nothing else.

Held frames are bounded: :attr:`RecognitionConfig.max_s` seconds with a person decide the exercise even
without a rep, and :data:`MAX_HELD_S` seconds or :data:`MAX_HELD_FRAMES` frames in all (a person who walked
away mid-recognition) release the held frames as they are. Both are capture time first, so a Pi's 3 frames/s
holds no longer than 30 do; the frame count bounds the memory.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from formcheck_aggregator.recognition import ExerciseRecogniser, Recognition, RecognitionConfig
from formcheck_edge.classifier import ModelLoadError
from formcheck_edge.processor import Observation
from formcheck_protocol.messages import Exercise, FrameMessage

log = logging.getLogger(__name__)

MAX_HELD_S: Final = 60.0
"""Capture time held at most while recognising; past it the frames are published as classified."""

MAX_HELD_FRAMES: Final = 1800
"""Frames held at most (a minute at 30 fps): the memory bound at any frame rate."""


class Classifying(Protocol):
    """What the gate needs of :class:`formcheck_edge.processor.FrameProcessor`."""

    @property
    def exercise(self) -> Exercise: ...

    def classify(self, seen: Observation) -> FrameMessage: ...

    def switch_exercise(self, exercise: Exercise) -> bool: ...


class ExerciseGate:
    """Between the processor and the publisher: :meth:`submit` a frame, publish what it returns."""

    def __init__(self, processor: Classifying, config: RecognitionConfig | None = None) -> None:
        self.processor = processor
        self.config = config or RecognitionConfig()
        self.mismatches = 0
        self._named: Exercise | None = None
        self._recogniser: ExerciseRecogniser | None = None
        self._held: list[tuple[Observation, FrameMessage]] = []
        self.recognition: Recognition | None = None
        """The latest recognition (of this check-in, or an earlier one)."""

    @property
    def recognising(self) -> bool:
        """Frames are being held until the exercise is recognised."""
        return self._recogniser is not None and self._named is None

    def recognise(self) -> list[FrameMessage]:
        """A check-in without an exercise: recognise it from the next frames (returns frames to publish)."""
        return self._begin(None, ExerciseRecogniser(self.config))

    def watch(self, named: Exercise) -> list[FrameMessage]:
        """A check-in naming ``named``: keep it, but count it if the pose says otherwise."""
        return self._begin(named, ExerciseRecogniser(self.config))

    def stop(self) -> list[FrameMessage]:
        """Check-out: nothing to recognise any more; held frames are published as classified."""
        return self._begin(None, None)

    def _begin(self, named: Exercise | None, recogniser: ExerciseRecogniser | None) -> list[FrameMessage]:
        out = self.release()
        self._named, self._recogniser = named, recogniser
        return out

    def finish(self) -> list[FrameMessage]:
        """End of stream: decide from what was seen, and publish what is held."""
        recogniser = self._recogniser
        self._recogniser = None
        if recogniser is None or self._named is not None or not self._held:
            return self.release()
        recognition = recogniser.finish()
        return self.release() if recognition is None else self._switch(recognition)

    def release(self) -> list[FrameMessage]:
        """Publish the held frames as classified so far (end of stream, a new check-in)."""
        out = [message for _, message in self._held]
        self._held.clear()
        return out

    def submit(self, seen: Observation) -> list[FrameMessage]:
        """One observed frame in; the frame messages to publish now, in ``seq`` order."""
        message = self.processor.classify(seen)
        recogniser = self._recogniser
        if recogniser is None:
            return [message]
        if self._named is not None:
            recognition = recogniser.push(message)
            if recognition is not None:
                self._recogniser = None
                self.recognition = recognition
                if recognition.exercise != self._named:
                    self.mismatches += 1
                    log.warning("check-in names %s but the pose looks like %s (confidence %.2f: %s)",
                                self._named, recognition.exercise, recognition.confidence, recognition.reason)
            return [message]
        if not self._held and message.phase == "no_person":
            return [message]  # nobody there yet: nothing to hold
        self._held.append((seen, message))
        recognition = recogniser.push(message)
        held_s = (message.ts - self._held[0][1].ts) / 1000
        if recognition is None and (held_s >= MAX_HELD_S or len(self._held) >= MAX_HELD_FRAMES):
            recognition = recogniser.finish()
            if recognition is None:
                log.info("no exercise recognised in %d frames: publishing them as %s", len(self._held),
                         self.processor.exercise)
                self._recogniser = None
                return self.release()
        if recognition is None:
            return []
        self._recogniser = None
        return self._switch(recognition)

    def _switch(self, recognition: Recognition) -> list[FrameMessage]:
        """Classify with the recognised exercise's model from the first held frame on."""
        self.recognition = recognition
        wanted = recognition.exercise
        log.info("recognised %s (confidence %.2f: %s)", wanted, recognition.confidence, recognition.reason)
        if wanted == self.processor.exercise:
            return self.release()
        try:
            switched = self.processor.switch_exercise(wanted)
        except ModelLoadError as exc:
            log.error("recognised %s but its model cannot be used: %s", wanted, exc)
            switched = False
        if not switched:
            log.warning("recognised %s but no model exists for it; still classifying %s", wanted,
                        self.processor.exercise)
            return self.release()
        held, self._held = self._held, []
        return [self.processor.classify(seen) for seen, _ in held]
