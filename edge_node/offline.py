"""Run the edge per-frame path over a video file without a broker: what ``formcheck analyze`` and evaluation use."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from edge_node.capture import CapturedFrame, CaptureThread, open_source
from edge_node.config import EdgeConfig, load_config
from edge_node.exercise_gate import ExerciseGate
from edge_node.processor import FrameProcessor
from formcheck.queues import DropQueue, QueueClosed
from protocol.messages import Exercise, FrameMessage


def offline_config(video: Path, node: str = "analyze", exercise: Exercise = "squat") -> EdgeConfig:
    """Edge config for reading ``video`` as fast as possible (every frame classified, none dropped)."""
    return load_config(None, {
        "node": {"id": node, "exercise": exercise, "follow_session": False},
        "source": {"uri": str(video), "realtime": False},
    }, environ={})


def classify_video(config: EdgeConfig, gate: Callable[[FrameProcessor], ExerciseGate] | None = None
                   ) -> Iterator[FrameMessage]:
    """Every frame of the configured file source, classified exactly as a live edge node would.

    With ``gate``, the frames go through the :class:`ExerciseGate` it makes (e.g. to recognise the exercise, as
    a node checked in without one does); the gate is the caller's to read afterwards.
    """
    source = open_source(config.source)
    processor = FrameProcessor.create(config, secrets.token_hex(8))
    exercise_gate = gate(processor) if gate is not None else None
    frames: DropQueue[CapturedFrame] = DropQueue(config.source.queue_size)
    capture = CaptureThread(config.source, source, frames)
    capture.start()
    try:
        while True:
            try:
                frame = frames.get(timeout=1.0)
            except QueueClosed:
                if exercise_gate is not None:
                    yield from exercise_gate.finish()
                return
            if frame is None:
                continue
            if exercise_gate is None:
                yield processor.process(frame)
            else:
                yield from exercise_gate.submit(processor.observe(frame))
    finally:
        capture.stop()
        capture.join(timeout=2.0)
        processor.close()
