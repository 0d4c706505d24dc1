"""The edge's second thread: numbered pose observations in, frame messages out to the publisher.

The pose model is an edge node's critical path, so the inference loop runs it and nothing else per frame. Body
measures, the classifier, the fault rules, exercise recognition and following check-ins happen here, while the
loop already runs the pose model on the next frame (the pose graph releases the GIL while it computes). One
consumer keeps observations in capture order, which the classifier's motion window and ``seq`` need. The queue
between the two waits instead of dropping: a numbered frame is never lost between them; if this stage fell
behind, the pose loop would wait and the capture queue would drop frames, counted, as for a slow pose model.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final, Protocol

from formcheck_edge.classifier import ModelLoadError
from formcheck_edge.exercise_gate import Classifying, ExerciseGate
from formcheck_edge.processor import Observation
from formcheck_protocol.messages import FrameMessage, SessionMessage
from formcheck_runtime.queues import DropQueue, QueueClosed

log = logging.getLogger(__name__)

QUEUE_FRAMES: Final = 8
"""Observations waiting for this stage at most (it keeps up with the pose model by far: ~1 ms against ~15)."""
SESSION_POLL_S: Final = 0.25
"""How soon a check-in is followed while no frame comes (an idle node publishes none)."""


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


class StageProcessor(Classifying, Protocol):
    """What the stage needs of :class:`formcheck_edge.processor.FrameProcessor` besides the gate's needs."""

    @property
    def classifier(self) -> Versioned: ...


class Publishing(Protocol):
    """What the stage needs of :class:`formcheck_edge.publisher.EdgePublisher`."""

    def enqueue(self, frame: FrameMessage) -> None: ...

    def update_status(self, **fields: Any) -> None: ...


class SessionBox:
    """Latest session, handed from the MQTT thread to this stage.

    The broker redelivers the retained session on every reconnect: the same check-in again is not a new one (it
    must not restart exercise recognition in the middle of a set).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[SessionMessage | None] | None = None
        self._taken: tuple[SessionMessage | None] | None = None

    def put(self, session: SessionMessage | None) -> None:
        with self._lock:
            self._pending = (session,)

    def take(self) -> tuple[SessionMessage | None] | None:
        """The session received since the last call, when it differs from the last one taken."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None or pending == self._taken:
                return None
            self._taken = pending
            return pending


class ClassifyStage(threading.Thread):
    """:meth:`submit` observations in capture order; :meth:`close` at the end, then ``join``."""

    def __init__(self, processor: StageProcessor, gate: ExerciseGate, sessions: SessionBox,
                 publisher: Publishing) -> None:
        super().__init__(name="classify", daemon=True)
        self._processor = processor
        self._gate = gate
        self._sessions = sessions
        self._publisher = publisher
        self._queue: DropQueue[Observation] = DropQueue(QUEUE_FRAMES, "drop_newest")  # never full: put_wait
        self.error: BaseException | None = None
        """What ended the stage early (a bug); :meth:`submit` raises it in the inference loop."""

    def submit(self, seen: Observation) -> None:
        """Hand over the next observation, waiting while the stage is behind; raises what ended the stage (which
        closes the queue as it ends, so the wait cannot outlive it)."""
        try:
            self._queue.put_wait(seen)
        except QueueClosed:
            if self.error is not None:
                raise self.error from None
            raise

    def close(self) -> None:
        """No more observations: the stage classifies what is queued, releases what the gate holds, and ends."""
        self._queue.close()

    def run(self) -> None:
        try:
            while True:
                try:
                    seen = self._queue.get(timeout=SESSION_POLL_S)
                except QueueClosed:
                    break
                self._step(seen)
            self._publish(self._gate.finish())
        except BaseException as exc:  # noqa: BLE001 - handed to the inference loop, which raises it
            self.error = exc
            self._queue.close()

    def _step(self, seen: Observation | None) -> None:
        processor = self._processor
        classifying = processor.exercise
        messages = follow_session(self._gate, self._sessions)
        if seen is not None:
            messages += self._gate.submit(seen)
        self._publish(messages)
        if processor.exercise != classifying:
            self._publisher.update_status(exercise=processor.exercise, model=processor.classifier.version)

    def _publish(self, messages: list[FrameMessage]) -> None:
        for message in messages:
            self._publisher.enqueue(message)


def follow_session(gate: ExerciseGate, sessions: SessionBox) -> list[FrameMessage]:
    """Follow a new check-in: its exercise when it names one (and a model exists), else recognise it.

    Returns the frames the gate held that are now to be published.
    """
    pending = sessions.take()
    if pending is None:
        return []
    session = pending[0]
    if session is None:
        return gate.stop()
    wanted = session.exercise
    if wanted is None:
        log.info("session names no exercise: recognising it from the pose")
        return gate.recognise()
    processor = gate.processor
    if wanted != processor.exercise:
        try:
            switched = processor.switch_exercise(wanted)
        except ModelLoadError as exc:
            log.error("session asks for %s but its model cannot be used: %s", wanted, exc)
            switched = False
        if switched:
            log.info("session: now classifying %s", wanted)
        else:
            log.warning("session asks for %s but no model exists for it; still classifying %s",
                        wanted, processor.exercise)
    return gate.watch(wanted)
